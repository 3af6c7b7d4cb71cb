// Package dynamo is the job.Store over one DynamoDB table (the SAM
// application's; ../shared/DESIGN.md "Job store").
//
// Items (every key attribute is a string):
//
//	PK                 SK                      what
//	job#<id>           meta                    the Job; counters as top-level numbers;
//	                                           GSI1PK="jobs", GSI1SK=<createdAt>#<id>
//	job#<id>           shard#<node>#<db>       a Shard checkpoint
//	job#<id>           report#<name>           a report body (gzip above 32 KiB); the
//	                                           baseline snapshots are reports named
//	                                           snapshot#<time>
//	slots#<kind>       count                   held: slots of the kind in use
//	slots#<kind>       job#<id>                the slot that job id holds
//
// Index GSI1 (GSI1PK, GSI1SK; projection ALL) lists jobs newest first. The
// table's TTL attribute is expireAt (epoch seconds): the meta item carries
// Job.ExpireAt, and the job's shard and report items get the same value so
// that they go with it.
//
// Writes:
//   - Create is a PutItem on attribute_not_exists(PK).
//   - Transition and Update read the meta item (consistent read), apply the
//     job package's rules, and SET/REMOVE only the attributes that changed,
//     on the condition that the status is still the one read; if it is not,
//     they read again and retry (so mut may run more than once). They never
//     write counters, and concurrent Updates of different fields both land.
//   - AddCounters is one UpdateItem that ADDs every counter.
//   - Acquire and Release are TransactWriteItems over the slot item and the
//     kind's count item (held < limit), so a slot is taken at most once per
//     id and freed exactly once.
//
// List reads GSI1, which DynamoDB updates asynchronously: a job changed a
// moment ago may be listed as it was. Get, Shards and Report read strongly.
package dynamo

import (
	"bytes"
	"compress/gzip"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/kvmigrate/kvmigrate/internal/job"
)

// Names in the table, shared with template.yaml.
const (
	// IndexName is the global secondary index that lists jobs.
	IndexName = "GSI1"
	// TTLAttribute is the table's time-to-live attribute (epoch seconds).
	TTLAttribute = "expireAt"

	attrPK     = "PK"
	attrSK     = "SK"
	attrGSI1PK = "GSI1PK"
	attrGSI1SK = "GSI1SK"
	attrStatus = "status"
	attrHeld   = "held"
	// attrWrite is a token each Create/Transition/Update writes with it:
	// after a lost answer and the SDK's retry, a writer that finds its own
	// token knows the first attempt landed.
	attrWrite = "writeToken"

	skMeta       = "meta"
	skSlotCount  = "count"
	prefixJob    = "job#"
	prefixShard  = "shard#"
	prefixReport = "report#"
	prefixSlots  = "slots#"
	listPK       = "jobs"
)

const (
	// timeLayout is fixed-width, so that strings sort as times do (GSI1SK).
	timeLayout = "2006-01-02T15:04:05.000000000Z07:00"
	// gzipAbove: reports larger than this are stored gzip-compressed.
	gzipAbove = 32 << 10
	// maxReportBytes keeps a report item under DynamoDB's 400 KB item limit.
	maxReportBytes = 380_000
	// maxReportName keeps the sort key well under its 1024 bytes.
	maxReportName = 200
	// listQueries bounds the Query calls of one List when a filter skips
	// many jobs: the page is then short and the token continues the scan.
	listQueries = 10
	// listBatch is the Query page size when List filters.
	listBatch = 200
	// maxAttempts bounds the retries of a conditional write that keeps
	// losing to concurrent writers (each loss means another writer won).
	maxAttempts = 25
)

// Client is what the Store needs of a *dynamodb.Client.
type Client interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	// For CreateTable only.
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTimeToLive(context.Context, *dynamodb.UpdateTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

var _ Client = (*dynamodb.Client)(nil)

// Store is a job.Store in a DynamoDB table. It is safe for concurrent use.
type Store struct {
	db    Client
	table string
	log   *slog.Logger

	listBatch, listQueries int // see the constants; tests lower them
}

var _ job.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLogger sets where the Store logs what it cannot return as an error
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// New returns a Store over table. It makes no call; see CreateTable.
func New(db Client, table string, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("dynamo job store: no DynamoDB client")
	}
	if table == "" {
		return nil, errors.New("dynamo job store: no table name")
	}
	s := &Store{db: db, table: table, log: slog.Default(), listBatch: listBatch, listQueries: listQueries}
	for _, opt := range opts {
		opt(s)
	}
	return s, nil
}

// Table returns the table name.
func (s *Store) Table() string { return s.table }

// Close does nothing: the client belongs to the caller.
func (s *Store) Close() error { return nil }

// CreateTable creates the table (on-demand, keys PK/SK, index GSI1, TTL on
// expireAt) and waits until it is active. For tests and local setups; the
// SAM template declares the same table in production. A table that already
// exists is left as it is.
func (s *Store) CreateTable(ctx context.Context) error {
	str := func(name string) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: types.ScalarAttributeTypeS}
	}
	key := func(name string, kt types.KeyType) types.KeySchemaElement {
		return types.KeySchemaElement{AttributeName: aws.String(name), KeyType: kt}
	}
	_, err := s.db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(s.table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{str(attrPK), str(attrSK), str(attrGSI1PK), str(attrGSI1SK)},
		KeySchema:            []types.KeySchemaElement{key(attrPK, types.KeyTypeHash), key(attrSK, types.KeyTypeRange)},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String(IndexName),
			KeySchema:  []types.KeySchemaElement{key(attrGSI1PK, types.KeyTypeHash), key(attrGSI1SK, types.KeyTypeRange)},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
		SSESpecification: &types.SSESpecification{Enabled: aws.Bool(true)},
	})
	if _, exists := errors.AsType[*types.ResourceInUseException](err); exists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create table %s: %w", s.table, err)
	}
	waiter := dynamodb.NewTableExistsWaiter(s.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 200*time.Millisecond, 2*time.Second
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}, 5*time.Minute); err != nil {
		return fmt.Errorf("create table %s: wait until active: %w", s.table, err)
	}
	_, err = s.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(TTLAttribute), Enabled: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("create table %s: enable TTL on %s: %w", s.table, TTLAttribute, err)
	}
	return nil
}

// ---- items -----------------------------------------------------------------

// Items are (un)marshaled with the json tags, so that job.Options and
// job.Counters keep their JSON names.
func marshal(in any) (map[string]types.AttributeValue, error) {
	return attributevalue.MarshalMapWithOptions(in, func(o *attributevalue.EncoderOptions) { o.TagKey = "json" })
}

func unmarshal(item map[string]types.AttributeValue, out any) error {
	return attributevalue.UnmarshalMapWithOptions(item, out, func(o *attributevalue.DecoderOptions) { o.TagKey = "json" })
}

// jobFields are the meta item's attributes that Transition and Update may
// write: everything but the keys and the counters.
type jobFields struct {
	ID              string      `json:"id"`
	Kind            job.Kind    `json:"kind"`
	Status          job.Status  `json:"status"`
	Stage           string      `json:"stage,omitempty"`
	Mode            string      `json:"mode,omitempty"`
	Source          string      `json:"source,omitempty"`
	Target          string      `json:"target,omitempty"`
	SourceSecretRef string      `json:"sourceSecretRef,omitempty"`
	TargetSecretRef string      `json:"targetSecretRef,omitempty"`
	Options         job.Options `json:"options"`
	Error           string      `json:"error,omitempty"`
	CreatedAt       string      `json:"createdAt"`
	UpdatedAt       string      `json:"updatedAt"`
	StartedAt       string      `json:"startedAt,omitempty"`
	FinishedAt      string      `json:"finishedAt,omitempty"`
	ExpireAt        int64       `json:"expireAt,omitempty"` // TTLAttribute
	ExecutionARN    string      `json:"executionArn,omitempty"`
	TaskARN         string      `json:"taskArn,omitempty"`
	// Progress is one map attribute, replaced as a whole by each report.
	Progress job.Progress `json:"progress"`
	Request  string       `json:"request,omitempty"`
}

// metaItem is the whole meta item.
type metaItem struct {
	PK     string `json:"PK"`
	SK     string `json:"SK"`
	GSI1PK string `json:"GSI1PK"`
	GSI1SK string `json:"GSI1SK"`
	jobFields
	job.Counters // flattened: each counter is a top-level number (ADD)
}

type shardItem struct {
	PK string `json:"PK"`
	SK string `json:"SK"`
	job.Shard
	ExpireAt int64 `json:"expireAt,omitempty"`
}

type reportItem struct {
	PK        string `json:"PK"`
	SK        string `json:"SK"`
	Name      string `json:"name"`
	Body      []byte `json:"body,omitempty"`
	Encoding  string `json:"encoding,omitempty"` // "gzip" or ""
	UpdatedAt string `json:"updatedAt"`
	ExpireAt  int64  `json:"expireAt,omitempty"`
}

type slotItem struct {
	PK         string `json:"PK"`
	SK         string `json:"SK"`
	AcquiredAt string `json:"acquiredAt"`
}

func jobPK(id string) string { return prefixJob + id }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: pk},
		attrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

func metaKey(id string) map[string]types.AttributeValue { return key(jobPK(id), skMeta) }

func shardSK(node string, db int) string { return prefixShard + node + "#" + strconv.Itoa(db) }

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: %w", field, s, err)
	}
	return t.UTC(), nil
}

func epoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fieldsOf(j job.Job) jobFields {
	return jobFields{
		ID: j.ID, Kind: j.Kind, Status: j.Status, Stage: j.Stage, Mode: j.Mode,
		Source: j.Source, Target: j.Target, SourceSecretRef: j.SourceSecretRef, TargetSecretRef: j.TargetSecretRef,
		Options: j.Options, Error: j.Error,
		CreatedAt: formatTime(j.CreatedAt), UpdatedAt: formatTime(j.UpdatedAt),
		StartedAt: formatTime(j.StartedAt), FinishedAt: formatTime(j.FinishedAt),
		ExpireAt:     epoch(j.ExpireAt),
		ExecutionARN: j.ExecutionARN, TaskARN: j.TaskARN,
		Progress: j.Progress, Request: j.Request,
	}
}

func gsi1SK(createdAt, id string) string { return createdAt + "#" + id }

func toMetaItem(j job.Job) metaItem {
	f := fieldsOf(j)
	return metaItem{
		PK: jobPK(j.ID), SK: skMeta, GSI1PK: listPK, GSI1SK: gsi1SK(f.CreatedAt, j.ID),
		jobFields: f, Counters: j.Counters,
	}
}

func decodeJob(item map[string]types.AttributeValue) (job.Job, error) {
	var it metaItem
	if err := unmarshal(item, &it); err != nil {
		return job.Job{}, fmt.Errorf("decode job item: %w", err)
	}
	f := it.jobFields
	j := job.Job{
		ID: f.ID, Kind: f.Kind, Status: f.Status, Stage: f.Stage, Mode: f.Mode,
		Source: f.Source, Target: f.Target, SourceSecretRef: f.SourceSecretRef, TargetSecretRef: f.TargetSecretRef,
		Options: f.Options, Counters: it.Counters, Error: f.Error,
		ExecutionARN: f.ExecutionARN, TaskARN: f.TaskARN,
		Progress: f.Progress, Request: f.Request,
	}
	var errs []error
	for _, t := range []struct {
		name string
		s    string
		dst  *time.Time
	}{
		{"createdAt", f.CreatedAt, &j.CreatedAt}, {"updatedAt", f.UpdatedAt, &j.UpdatedAt},
		{"startedAt", f.StartedAt, &j.StartedAt}, {"finishedAt", f.FinishedAt, &j.FinishedAt},
	} {
		var err error
		*t.dst, err = parseTime(t.name, t.s)
		errs = append(errs, err)
	}
	if f.ExpireAt != 0 {
		j.ExpireAt = time.Unix(f.ExpireAt, 0).UTC()
	}
	if err := errors.Join(errs...); err != nil {
		return job.Job{}, fmt.Errorf("decode job %s: %w", f.ID, err)
	}
	return j, nil
}

// ---- errors ----------------------------------------------------------------

func conditionFailed(err error) bool {
	_, ok := errors.AsType[*types.ConditionalCheckFailedException](err)
	return ok
}

// wrap adds the table to an SDK error and says what to do about a missing
// table. A canceled or expired ctx stays visible to errors.Is.
func (s *Store) wrap(ctx context.Context, what string, err error) error {
	if _, ok := errors.AsType[*types.ResourceNotFoundException](err); ok {
		return fmt.Errorf("%s: DynamoDB table %s (or its index %s) does not exist: deploy the stack or call CreateTable: %w",
			what, s.table, IndexName, err)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%s: %w (%w)", what, ctxErr, err)
	}
	if transient(err) {
		return fmt.Errorf("%s in table %s: %w: %w", what, s.table, job.ErrTransient, err)
	}
	return fmt.Errorf("%s in table %s: %w", what, s.table, err)
}

// transientCodes are the DynamoDB error codes worth trying again later.
var transientCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"RequestLimitExceeded":                   true,
	"InternalServerError":                    true,
	"ServiceUnavailable":                     true,
	"TransactionInProgressException":         true,
}

// transientReasons are the cancellation reasons of a TransactWriteItems
// that a later attempt may get past.
var transientReasons = map[string]bool{
	"ThrottlingError":               true,
	"ProvisionedThroughputExceeded": true,
	"TransactionConflict":           true,
}

// transient reports whether err, as the SDK returns it after its own
// retries, is throttling, a DynamoDB server error or a network failure:
// worth trying again later (job.ErrTransient), unlike a refused request.
func transient(err error) bool {
	if tce, ok := errors.AsType[*types.TransactionCanceledException](err); ok {
		for _, r := range tce.CancellationReasons {
			if transientReasons[aws.ToString(r.Code)] {
				return true
			}
		}
		return false
	}
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		if transientCodes[ae.ErrorCode()] {
			return true
		}
	}
	// Connection errors, timeouts and retryable HTTP statuses, as the
	// SDK's standard retryer judges them.
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// ---- jobs ------------------------------------------------------------------

func (s *Store) Create(ctx context.Context, j job.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j, err := job.Prepare(j, time.Now())
	if err != nil {
		return err
	}
	item, err := marshal(toMetaItem(j))
	if err != nil {
		return fmt.Errorf("create job %s: encode: %w", j.ID, err)
	}
	token := crand.Text()
	item[attrWrite] = &types.AttributeValueMemberS{Value: token}
	cond, err := expression.NewBuilder().WithCondition(expression.AttributeNotExists(expression.Name(attrPK))).Build()
	if err != nil {
		return fmt.Errorf("create job %s: %w", j.ID, err)
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 aws.String(s.table),
		Item:                      item,
		ConditionExpression:       cond.Condition(),
		ExpressionAttributeNames:  cond.Names(),
		ExpressionAttributeValues: cond.Values(),
	})
	if conditionFailed(err) {
		// The SDK retries a PutItem whose answer was lost (a connection
		// reset after the write): the item then carries this create's
		// token, and the create did happen.
		if s.wroteLast(ctx, "create job "+j.ID, j.ID, token) != nil {
			return nil
		}
		return fmt.Errorf("create job %s: id exists: %w", j.ID, job.ErrConflict)
	}
	if err != nil {
		return s.wrap(ctx, "create job "+j.ID, err)
	}
	return nil
}

// wroteLast returns job id's meta item when its last write was the one
// that carried token (attrWrite), nil otherwise or when it cannot be read.
func (s *Store) wroteLast(ctx context.Context, what, id, token string) map[string]types.AttributeValue {
	item, err := s.getItem(ctx, what, metaKey(id), nil)
	if tok, ok := item[attrWrite].(*types.AttributeValueMemberS); err != nil || !ok || tok.Value != token {
		return nil
	}
	return item
}

func (s *Store) Get(ctx context.Context, id string) (job.Job, error) {
	if err := ctx.Err(); err != nil {
		return job.Job{}, err
	}
	item, err := s.getItem(ctx, "get job "+id, metaKey(id), nil)
	if err != nil {
		return job.Job{}, err
	}
	if item == nil {
		return job.Job{}, fmt.Errorf("job %q: %w", id, job.ErrNotFound)
	}
	return decodeJob(item)
}

// getItem reads one item strongly; nil if there is none. proj, if not nil,
// names the attributes to read.
func (s *Store) getItem(ctx context.Context, what string, k map[string]types.AttributeValue, proj []string) (map[string]types.AttributeValue, error) {
	in := &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: k, ConsistentRead: aws.Bool(true)}
	if len(proj) > 0 {
		p := expression.NamesList(expression.Name(proj[0]))
		for _, name := range proj[1:] {
			p = p.AddNames(expression.Name(name))
		}
		e, err := expression.NewBuilder().WithProjection(p).Build()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		in.ProjectionExpression, in.ExpressionAttributeNames = e.Projection(), e.Names()
	}
	out, err := s.db.GetItem(ctx, in)
	if err != nil {
		return nil, s.wrap(ctx, what, err)
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	return out.Item, nil
}

// jobExpiry checks that job id exists and returns its expireAt (0: none).
func (s *Store) jobExpiry(ctx context.Context, what, id string) (int64, error) {
	item, err := s.getItem(ctx, what, metaKey(id), []string{attrPK, TTLAttribute})
	if err != nil {
		return 0, err
	}
	if item == nil {
		return 0, fmt.Errorf("job %q: %w", id, job.ErrNotFound)
	}
	var it struct {
		ExpireAt int64 `json:"expireAt"`
	}
	if err := unmarshal(item, &it); err != nil {
		return 0, fmt.Errorf("%s: decode: %w", what, err)
	}
	return it.ExpireAt, nil
}

func (s *Store) Transition(ctx context.Context, id string, to job.Status, mut func(*job.Job)) (job.Job, error) {
	return s.modify(ctx, "transition job "+id+" to "+string(to), id, func(j job.Job) (job.Job, error) {
		return job.Apply(j, to, mut, time.Now())
	})
}

func (s *Store) Update(ctx context.Context, id string, mut func(*job.Job)) (job.Job, error) {
	return s.modify(ctx, "update job "+id, id, func(j job.Job) (job.Job, error) {
		return job.ApplyUpdate(j, mut, time.Now())
	})
}

// modify reads the job, applies the rules, and writes the attributes that
// changed on the condition that the status is still the one read. When that
// condition fails another writer changed the status: read again and retry
// (apply, and so mut, may then run more than once).
func (s *Store) modify(ctx context.Context, what, id string, apply func(job.Job) (job.Job, error)) (job.Job, error) {
	for range maxAttempts {
		if err := ctx.Err(); err != nil {
			return job.Job{}, err
		}
		cur, err := s.Get(ctx, id)
		if err != nil {
			return job.Job{}, err
		}
		next, err := apply(cur)
		if err != nil {
			return job.Job{}, err
		}
		update, err := diff(fieldsOf(cur), fieldsOf(next))
		if err != nil {
			return job.Job{}, fmt.Errorf("%s: %w", what, err)
		}
		cond := expression.And(
			expression.AttributeExists(expression.Name(attrPK)),
			expression.Name(attrStatus).Equal(expression.Value(string(cur.Status))),
		)
		token := crand.Text()
		update = update.Set(expression.Name(attrWrite), expression.Value(token))
		e, err := expression.NewBuilder().WithUpdate(update).WithCondition(cond).Build()
		if err != nil {
			return job.Job{}, fmt.Errorf("%s: %w", what, err)
		}
		out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(s.table),
			Key:                       metaKey(id),
			UpdateExpression:          e.Update(),
			ConditionExpression:       e.Condition(),
			ExpressionAttributeNames:  e.Names(),
			ExpressionAttributeValues: e.Values(),
			ReturnValues:              types.ReturnValueAllNew,
		})
		attrs := map[string]types.AttributeValue(nil)
		if out != nil {
			attrs = out.Attributes
		}
		if conditionFailed(err) {
			// The status moved, the job expired — or this very write
			// landed and its answer was lost, then the SDK's retry failed
			// the condition: the item then carries this write's token.
			if attrs = s.wroteLast(ctx, what, id, token); attrs == nil {
				continue // read again
			}
			err = nil
		}
		if err != nil {
			return job.Job{}, s.wrap(ctx, what, err)
		}
		stored, err := decodeJob(attrs)
		if err != nil {
			return job.Job{}, fmt.Errorf("%s: %w", what, err)
		}
		if stored.ExpireAt != cur.ExpireAt {
			s.stampChildren(ctx, id, epoch(stored.ExpireAt))
		}
		return stored, nil
	}
	return job.Job{}, fmt.Errorf("%s: lost %d conditional writes in a row to concurrent status changes: %w",
		what, maxAttempts, job.ErrConflict)
}

// diff returns the SET and REMOVE actions that turn the attributes of from
// into those of to.
func diff(from, to jobFields) (expression.UpdateBuilder, error) {
	a, err := marshal(from)
	if err != nil {
		return expression.UpdateBuilder{}, err
	}
	b, err := marshal(to)
	if err != nil {
		return expression.UpdateBuilder{}, err
	}
	var u expression.UpdateBuilder
	for _, name := range slices.Sorted(maps.Keys(b)) {
		if !reflect.DeepEqual(a[name], b[name]) {
			u = u.Set(expression.Name(name), expression.Value(b[name]))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[name]; !ok {
			u = u.Remove(expression.Name(name))
		}
	}
	return u, nil
}

// stampChildren gives the job's shard and report items the job's expiry, so
// that DynamoDB deletes them with it. The job has moved already; a failure
// here only leaves items behind that no read returns (every read checks the
// meta item), so it is logged, not returned.
func (s *Store) stampChildren(ctx context.Context, id string, expireAt int64) {
	update := expression.Remove(expression.Name(TTLAttribute))
	if expireAt != 0 {
		update = expression.Set(expression.Name(TTLAttribute), expression.Value(expireAt))
	}
	e, err := expression.NewBuilder().WithUpdate(update).
		WithCondition(expression.AttributeExists(expression.Name(attrPK))).Build()
	if err == nil {
		err = s.forChildren(ctx, id, func(k map[string]types.AttributeValue) error {
			_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName:                 aws.String(s.table),
				Key:                       k,
				UpdateExpression:          e.Update(),
				ConditionExpression:       e.Condition(),
				ExpressionAttributeNames:  e.Names(),
				ExpressionAttributeValues: e.Values(),
			})
			if conditionFailed(err) {
				return nil // gone meanwhile
			}
			return err
		})
	}
	if err != nil {
		s.log.WarnContext(ctx, "job store: could not set the expiry of a job's shard and report items",
			"table", s.table, "job", id, TTLAttribute, expireAt, "error", err)
	}
}

// forChildren calls fn with the key of each shard and report item of job id.
func (s *Store) forChildren(ctx context.Context, id string, fn func(map[string]types.AttributeValue) error) error {
	e, err := expression.NewBuilder().
		WithKeyCondition(expression.Key(attrPK).Equal(expression.Value(jobPK(id)))).
		WithProjection(expression.NamesList(expression.Name(attrPK), expression.Name(attrSK))).
		Build()
	if err != nil {
		return err
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    e.KeyCondition(),
		ProjectionExpression:      e.Projection(),
		ExpressionAttributeNames:  e.Names(),
		ExpressionAttributeValues: e.Values(),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, item := range out.Items {
			if sk, _ := item[attrSK].(*types.AttributeValueMemberS); sk == nil || sk.Value == skMeta {
				continue
			}
			if err := fn(item); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Store) AddCounters(ctx context.Context, id string, c job.Counters) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deltas, err := marshal(c)
	if err != nil {
		return fmt.Errorf("add counters of job %s: %w", id, err)
	}
	var update expression.UpdateBuilder
	for _, name := range slices.Sorted(maps.Keys(deltas)) {
		update = update.Add(expression.Name(name), expression.Value(deltas[name]))
	}
	e, err := expression.NewBuilder().WithUpdate(update).
		WithCondition(expression.AttributeExists(expression.Name(attrPK))).Build()
	if err != nil {
		return fmt.Errorf("add counters of job %s: %w", id, err)
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       metaKey(id),
		UpdateExpression:          e.Update(),
		ConditionExpression:       e.Condition(),
		ExpressionAttributeNames:  e.Names(),
		ExpressionAttributeValues: e.Values(),
	})
	if conditionFailed(err) {
		return fmt.Errorf("job %q: %w", id, job.ErrNotFound)
	}
	if err != nil {
		return s.wrap(ctx, "add counters of job "+id, err)
	}
	return nil
}

// ---- listing ---------------------------------------------------------------

func (s *Store) List(ctx context.Context, opts job.ListOptions) ([]job.Job, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	limit, err := opts.Check()
	if err != nil {
		return nil, "", err
	}
	var start map[string]types.AttributeValue
	if opts.Next != "" {
		if start, err = decodeToken(opts.Next); err != nil {
			return nil, "", err
		}
	}
	b := expression.NewBuilder().WithKeyCondition(expression.Key(attrGSI1PK).Equal(expression.Value(listPK)))
	var filters []expression.ConditionBuilder
	if opts.Kind != "" {
		filters = append(filters, expression.Name("kind").Equal(expression.Value(string(opts.Kind))))
	}
	if opts.Status != "" {
		filters = append(filters, expression.Name(attrStatus).Equal(expression.Value(string(opts.Status))))
	}
	switch len(filters) {
	case 1:
		b = b.WithFilter(filters[0])
	case 2:
		b = b.WithFilter(expression.And(filters[0], filters[1]))
	}
	e, err := b.Build()
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}

	// Read until one job more than the page holds (then the last one listed
	// is where the next page starts), or the end of the index, or, with a
	// filter that skips much, the query budget (then the index position is).
	var page []job.Job
	for range s.listQueries {
		batch := limit + 1 - len(page)
		if len(filters) > 0 {
			batch = max(batch, s.listBatch)
		}
		out, err := s.db.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(s.table),
			IndexName:                 aws.String(IndexName),
			KeyConditionExpression:    e.KeyCondition(),
			FilterExpression:          e.Filter(),
			ExpressionAttributeNames:  e.Names(),
			ExpressionAttributeValues: e.Values(),
			ScanIndexForward:          aws.Bool(false),
			ExclusiveStartKey:         start,
			Limit:                     aws.Int32(int32(batch)),
		})
		if err != nil {
			return nil, "", s.wrap(ctx, "list jobs", err)
		}
		for _, item := range out.Items {
			j, err := decodeJob(item)
			if err != nil {
				return nil, "", fmt.Errorf("list jobs: %w", err)
			}
			page = append(page, j)
			if len(page) > limit {
				page = page[:limit]
				last := page[limit-1]
				return page, encodeToken(gsi1SK(formatTime(last.CreatedAt), last.ID)), nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return page, "", nil
		}
		start = out.LastEvaluatedKey
	}
	sk, _ := start[attrGSI1SK].(*types.AttributeValueMemberS)
	if sk == nil {
		return nil, "", fmt.Errorf("list jobs: the index returned a position without %s", attrGSI1SK)
	}
	return page, encodeToken(sk.Value), nil
}

// A list token is the GSI1SK of the last job read, base64url-encoded; the
// rest of the index key follows from it.
func encodeToken(gsi1sk string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(gsi1sk))
}

func decodeToken(token string) (map[string]types.AttributeValue, error) {
	bad := fmt.Errorf("list jobs: malformed next token: %w", job.ErrInvalid)
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, bad
	}
	sk := string(raw)
	at, id, ok := strings.Cut(sk, "#")
	if !ok || !job.ValidID(id) {
		return nil, bad
	}
	if _, err := time.Parse(timeLayout, at); err != nil {
		return nil, bad
	}
	k := key(jobPK(id), skMeta)
	k[attrGSI1PK] = &types.AttributeValueMemberS{Value: listPK}
	k[attrGSI1SK] = &types.AttributeValueMemberS{Value: sk}
	return k, nil
}

// ---- shards ----------------------------------------------------------------

func (s *Store) PutShard(ctx context.Context, id string, sh job.Shard) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := job.CheckShard(sh); err != nil {
		return fmt.Errorf("job %s: %w", id, err)
	}
	if sh.UpdatedAt.IsZero() {
		sh.UpdatedAt = time.Now()
	}
	sh.UpdatedAt = sh.UpdatedAt.UTC().Round(0)
	what := fmt.Sprintf("put shard %s/%d of job %s", sh.Node, sh.DB, id)
	expireAt, err := s.jobExpiry(ctx, what, id)
	if err != nil {
		return err
	}
	item, err := marshal(shardItem{PK: jobPK(id), SK: shardSK(sh.Node, sh.DB), Shard: sh, ExpireAt: expireAt})
	if err != nil {
		return fmt.Errorf("%s: encode: %w", what, err)
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
		return s.wrap(ctx, what, err)
	}
	return nil
}

func (s *Store) Shards(ctx context.Context, id string) ([]job.Shard, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	what := "shards of job " + id
	if _, err := s.jobExpiry(ctx, what, id); err != nil {
		return nil, err
	}
	e, err := expression.NewBuilder().WithKeyCondition(expression.KeyAnd(
		expression.Key(attrPK).Equal(expression.Value(jobPK(id))),
		expression.Key(attrSK).BeginsWith(prefixShard),
	)).Build()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    e.KeyCondition(),
		ExpressionAttributeNames:  e.Names(),
		ExpressionAttributeValues: e.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	out := []job.Shard{}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.wrap(ctx, what, err)
		}
		for _, item := range page.Items {
			var it shardItem
			if err := unmarshal(item, &it); err != nil {
				return nil, fmt.Errorf("%s: decode: %w", what, err)
			}
			out = append(out, it.Shard)
		}
	}
	job.SortShards(out)
	return out, nil
}

// ---- reports ---------------------------------------------------------------

func (s *Store) PutReport(ctx context.Context, id, name string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name == "" || len(name) > maxReportName {
		return fmt.Errorf("job %s: report name must be 1-%d bytes, got %d: %w", id, maxReportName, len(name), job.ErrInvalid)
	}
	what := fmt.Sprintf("put report %q of job %s", name, id)
	it := reportItem{PK: jobPK(id), SK: prefixReport + name, Name: name, Body: body, UpdatedAt: formatTime(time.Now())}
	if len(body) > gzipAbove {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body) // writes to a bytes.Buffer do not fail
		_ = zw.Close()
		it.Body, it.Encoding = buf.Bytes(), "gzip"
	}
	if len(it.Body) > maxReportBytes {
		return fmt.Errorf("%s: %d bytes (%d stored) is over the %d a DynamoDB item can hold: %w",
			what, len(body), len(it.Body), maxReportBytes, job.ErrInvalid)
	}
	expireAt, err := s.jobExpiry(ctx, what, id)
	if err != nil {
		return err
	}
	it.ExpireAt = expireAt
	item, err := marshal(it)
	if err != nil {
		return fmt.Errorf("%s: encode: %w", what, err)
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
		return s.wrap(ctx, what, err)
	}
	return nil
}

func (s *Store) Report(ctx context.Context, id, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("report %q of job %s", name, id)
	if _, err := s.jobExpiry(ctx, what, id); err != nil {
		return nil, err
	}
	item, err := s.getItem(ctx, what, key(jobPK(id), prefixReport+name), nil)
	if err != nil {
		return nil, err
	}
	if item == nil {
		return nil, fmt.Errorf("job %s: report %q: %w", id, name, job.ErrNotFound)
	}
	var it reportItem
	if err := unmarshal(item, &it); err != nil {
		return nil, fmt.Errorf("%s: decode: %w", what, err)
	}
	switch it.Encoding {
	case "":
		if it.Body == nil {
			return []byte{}, nil
		}
		return it.Body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(it.Body))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return body, nil
	default:
		return nil, fmt.Errorf("%s: unknown encoding %q", what, it.Encoding)
	}
}

// ReportNames queries the job's report items whose sort key begins with
// "report#"+prefix; DynamoDB returns them in ascending byte order.
func (s *Store) ReportNames(ctx context.Context, id, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("report names %q of job %s", prefix, id)
	if _, err := s.jobExpiry(ctx, what, id); err != nil {
		return nil, err
	}
	e, err := expression.NewBuilder().
		WithKeyCondition(expression.KeyAnd(
			expression.Key(attrPK).Equal(expression.Value(jobPK(id))),
			expression.Key(attrSK).BeginsWith(prefixReport+prefix),
		)).
		WithProjection(expression.NamesList(expression.Name(attrSK))).
		Build()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    e.KeyCondition(),
		ProjectionExpression:      e.Projection(),
		ExpressionAttributeNames:  e.Names(),
		ExpressionAttributeValues: e.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	names := []string{}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.wrap(ctx, what, err)
		}
		for _, item := range page.Items {
			sk, _ := item[attrSK].(*types.AttributeValueMemberS)
			if sk == nil || !strings.HasPrefix(sk.Value, prefixReport) {
				return nil, fmt.Errorf("%s: an item without a report sort key", what)
			}
			names = append(names, strings.TrimPrefix(sk.Value, prefixReport))
		}
	}
	return names, nil
}

// ---- concurrency slots -----------------------------------------------------

func slotPK(kind job.Kind) string { return prefixSlots + string(kind) }

// Acquire writes, in one transaction, the slot item of id (if it does not
// exist) and held+1 on the kind's count item (if held < limit). The slot
// item failing its condition means id holds a slot already.
func (s *Store) Acquire(ctx context.Context, id string, kind job.Kind, limit int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := job.CheckSlot(id, kind, limit); err != nil {
		return err
	}
	item, err := marshal(slotItem{PK: slotPK(kind), SK: jobPK(id), AcquiredAt: formatTime(time.Now())})
	if err != nil {
		return fmt.Errorf("acquire %s slot for job %s: %w", kind, id, err)
	}
	free, err := expression.NewBuilder().WithCondition(expression.AttributeNotExists(expression.Name(attrPK))).Build()
	if err != nil {
		return err
	}
	held := expression.Name(attrHeld)
	take, err := expression.NewBuilder().
		WithUpdate(expression.Add(held, expression.Value(1))).
		WithCondition(expression.Or(expression.AttributeNotExists(held), held.LessThan(expression.Value(limit)))).
		Build()
	if err != nil {
		return err
	}
	reasons, err := s.transact(ctx, fmt.Sprintf("acquire %s slot for job %s", kind, id), []types.TransactWriteItem{
		{Put: &types.Put{
			TableName: aws.String(s.table), Item: item,
			ConditionExpression: free.Condition(), ExpressionAttributeNames: free.Names(),
		}},
		{Update: &types.Update{
			TableName: aws.String(s.table), Key: key(slotPK(kind), skSlotCount),
			UpdateExpression: take.Update(), ConditionExpression: take.Condition(),
			ExpressionAttributeNames: take.Names(), ExpressionAttributeValues: take.Values(),
		}},
	})
	switch {
	case err != nil:
		return err
	case reasons == nil:
		return nil
	case reasons[0]:
		return nil // id holds a slot already
	default:
		return fmt.Errorf("job %s: all %d %s slots are held: %w", id, limit, kind, job.ErrLimit)
	}
}

// Release deletes the slot item of id (if it exists) and decrements held, in
// one transaction: a slot is freed once however often Release is called.
func (s *Store) Release(ctx context.Context, id string, kind job.Kind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := job.CheckSlot(id, kind, 1); err != nil {
		return err
	}
	held, err := expression.NewBuilder().WithCondition(expression.AttributeExists(expression.Name(attrPK))).Build()
	if err != nil {
		return err
	}
	drop, err := expression.NewBuilder().WithUpdate(expression.Add(expression.Name(attrHeld), expression.Value(-1))).Build()
	if err != nil {
		return err
	}
	_, err = s.transact(ctx, fmt.Sprintf("release %s slot of job %s", kind, id), []types.TransactWriteItem{
		{Delete: &types.Delete{
			TableName: aws.String(s.table), Key: key(slotPK(kind), jobPK(id)),
			ConditionExpression: held.Condition(), ExpressionAttributeNames: held.Names(),
		}},
		{Update: &types.Update{
			TableName: aws.String(s.table), Key: key(slotPK(kind), skSlotCount),
			UpdateExpression: drop.Update(), ExpressionAttributeNames: drop.Names(), ExpressionAttributeValues: drop.Values(),
		}},
	})
	return err // a slot not held fails its condition: nothing to free
}

// transact runs a TransactWriteItems, retrying transaction conflicts with
// other writers of the same items. It returns nil reasons on success, or
// which items failed their condition when the transaction was canceled for
// that.
func (s *Store) transact(ctx context.Context, what string, items []types.TransactWriteItem) ([]bool, error) {
	for attempt := range maxAttempts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		if err == nil {
			return nil, nil
		}
		tce, ok := errors.AsType[*types.TransactionCanceledException](err)
		if !ok {
			return nil, s.wrap(ctx, what, err)
		}
		failed := make([]bool, len(items))
		conflict, anyFailed := false, false
		for i, r := range tce.CancellationReasons {
			switch code := aws.ToString(r.Code); code {
			case "ConditionalCheckFailed":
				if i < len(failed) {
					failed[i], anyFailed = true, true
				}
			case "TransactionConflict":
				conflict = true
			case "", "None":
			default:
				return nil, s.wrap(ctx, what, err)
			}
		}
		if anyFailed {
			return failed, nil
		}
		if !conflict {
			return nil, s.wrap(ctx, what, err)
		}
		// Back off a little, with jitter, before trying again.
		d := time.Duration(1+rand.IntN(10<<min(attempt, 4))) * time.Millisecond
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
	return nil, fmt.Errorf("%s: %d transaction conflicts in a row: %w", what, maxAttempts, job.ErrTransient)
}

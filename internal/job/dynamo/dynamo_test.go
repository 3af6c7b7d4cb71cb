package dynamo_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/dynamo"
	"github.com/kvmigrate/kvmigrate/internal/job/jobtest"
)

// moto starts one moto server for the test; stores get a table each.
func moto(t *testing.T) *dynamodb.Client {
	t.Helper()
	return dynamodb.NewFromConfig(awstest.Config(awstest.StartMoto(t)))
}

// newStore returns a Store over a new table of its own.
func newStore(t *testing.T, db *dynamodb.Client) *dynamo.Store {
	t.Helper()
	s, err := dynamo.New(db, "jobs-"+job.NewID())
	require.NoError(t, err)
	require.NoError(t, s.CreateTable(context.Background()))
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestStore runs everything that needs DynamoDB against one moto server;
// each test has tables of its own.
func TestStore(t *testing.T) {
	db := moto(t)
	t.Run("passes the Store contract suite", func(t *testing.T) {
		jobtest.Run(t, func(t *testing.T) job.Store { return newStore(t, db) })
	})
	tests := []struct {
		name string
		fn   func(*testing.T, *dynamodb.Client)
	}{
		{"creates its table with keys, index and TTL, once", testCreateTable},
		{"says what to do when the table is missing", testMissingTable},
		{"lays out jobs, shards and reports as documented, expiring together", testItemLayout},
		{"counts slots in one item and holds each in another", testSlotItems},
		{"compresses large reports and refuses those that cannot fit", testLargeReports},
		{"rejects list tokens it did not make", testListTokens},
		{"stops a filtered listing at its query budget", testListBudget},
		{"retries when another writer gets between the read and the write", testConcurrentWriters},
		{"retries slot transactions that conflict with others", testTransactionConflicts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, db)
		})
	}
}

func testCreateTable(t *testing.T, db *dynamodb.Client) {
	ctx := context.Background()
	s := newStore(t, db)

	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.Table())})
	require.NoError(t, err)
	table := out.Table
	assert.Equal(t, types.TableStatusActive, table.TableStatus)
	assert.Equal(t, []types.KeySchemaElement{
		{AttributeName: aws.String("PK"), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String("SK"), KeyType: types.KeyTypeRange},
	}, table.KeySchema)
	require.NotNil(t, table.BillingModeSummary)
	assert.Equal(t, types.BillingModePayPerRequest, table.BillingModeSummary.BillingMode)
	require.Len(t, table.GlobalSecondaryIndexes, 1)
	gsi := table.GlobalSecondaryIndexes[0]
	assert.Equal(t, dynamo.IndexName, aws.ToString(gsi.IndexName))
	assert.Equal(t, []types.KeySchemaElement{
		{AttributeName: aws.String("GSI1PK"), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String("GSI1SK"), KeyType: types.KeyTypeRange},
	}, gsi.KeySchema)
	assert.Equal(t, types.ProjectionTypeAll, gsi.Projection.ProjectionType)

	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.Table())})
	require.NoError(t, err)
	assert.Equal(t, types.TimeToLiveStatusEnabled, ttl.TimeToLiveDescription.TimeToLiveStatus)
	assert.Equal(t, dynamo.TTLAttribute, aws.ToString(ttl.TimeToLiveDescription.AttributeName))

	assert.NoError(t, s.CreateTable(ctx), "an existing table is left as it is")
}

func TestNewRefusesMissingArguments(t *testing.T) {
	_, err := dynamo.New(nil, "jobs")
	assert.Error(t, err)
	_, err = dynamo.New(&dynamodb.Client{}, "")
	assert.Error(t, err)
}

func testMissingTable(t *testing.T, db *dynamodb.Client) {
	s, err := dynamo.New(db, "no-such-table")
	require.NoError(t, err)
	_, err = s.Get(context.Background(), job.NewID())
	require.Error(t, err)
	assert.NotErrorIs(t, err, job.ErrNotFound, "a missing table is not a missing job")
	assert.ErrorContains(t, err, "no-such-table")
	assert.ErrorContains(t, err, "CreateTable")
}

// raw reads one item as stored.
func raw(t *testing.T, db *dynamodb.Client, s *dynamo.Store, pk, sk string) map[string]types.AttributeValue {
	t.Helper()
	out, err := db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(s.Table()),
		Key:            map[string]types.AttributeValue{"PK": str(pk), "SK": str(sk)},
		ConsistentRead: aws.Bool(true),
	})
	require.NoError(t, err)
	return out.Item
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func testItemLayout(t *testing.T, db *dynamodb.Client) {
	ctx := context.Background()
	s := newStore(t, db)

	j := job.Job{
		ID: job.NewID(), Kind: job.KindMigration, Mode: job.ModeCommand,
		Source: "redis://src.example:6379", Target: "valkey://dst.example:6379",
		Options:   job.Options{MaxOps: 100},
		CreatedAt: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), // no fraction: still fixed width
	}
	require.NoError(t, s.Create(ctx, j))
	require.NoError(t, s.AddCounters(ctx, j.ID, job.Counters{Copied: 7, Bytes: 1 << 40}))
	require.NoError(t, s.PutShard(ctx, j.ID, job.Shard{Node: "10.0.0.1:6379", DB: 3, Cursor: "42"}))
	require.NoError(t, s.PutReport(ctx, j.ID, job.ReportAnalysis, []byte(`{"blocking":false}`)))

	meta := raw(t, db, s, "job#"+j.ID, "meta")
	assert.Equal(t, str("jobs"), meta["GSI1PK"])
	assert.Equal(t, str("2025-06-01T12:00:00.000000000Z#"+j.ID), meta["GSI1SK"])
	assert.Equal(t, str("pending"), meta["status"])
	assert.Equal(t, num(7), meta["copied"], "counters are top-level numbers")
	assert.Equal(t, num(1<<40), meta["bytes"])
	assert.Equal(t, &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"maxOps": num(100)}}, meta["options"])
	assert.NotContains(t, meta, "expireAt", "a running job does not expire")
	assert.NotContains(t, meta, "stage", "empty attributes are left out")

	shard := raw(t, db, s, "job#"+j.ID, "shard#10.0.0.1:6379#3")
	require.NotEmpty(t, shard)
	assert.Equal(t, str("42"), shard["cursor"])
	assert.NotContains(t, shard, "expireAt")
	require.NotEmpty(t, raw(t, db, s, "job#"+j.ID, "report#analysis"))

	done, err := s.Transition(ctx, j.ID, job.StatusFailed, func(j *job.Job) { j.Error = "boom" })
	require.NoError(t, err)
	require.False(t, done.ExpireAt.IsZero())
	expireAt := num(done.ExpireAt.Unix())

	meta = raw(t, db, s, "job#"+j.ID, "meta")
	assert.Equal(t, expireAt, meta["expireAt"], "the TTL attribute is a number of epoch seconds")
	assert.Equal(t, num(7), meta["copied"], "a transition leaves counters alone")
	assert.Equal(t, expireAt, raw(t, db, s, "job#"+j.ID, "shard#10.0.0.1:6379#3")["expireAt"], "shards expire with their job")
	assert.Equal(t, expireAt, raw(t, db, s, "job#"+j.ID, "report#analysis")["expireAt"], "reports expire with their job")

	require.NoError(t, s.PutReport(ctx, j.ID, job.ReportValidation, []byte(`{}`)))
	assert.Equal(t, expireAt, raw(t, db, s, "job#"+j.ID, "report#validation")["expireAt"], "a report written later gets the expiry too")

	later := done.ExpireAt.Add(24 * time.Hour)
	_, err = s.Update(ctx, j.ID, func(j *job.Job) { j.ExpireAt = later })
	require.NoError(t, err)
	for _, sk := range []string{"meta", "shard#10.0.0.1:6379#3", "report#analysis", "report#validation"} {
		assert.Equal(t, num(later.Unix()), raw(t, db, s, "job#"+j.ID, sk)["expireAt"], "%s follows a changed expiry", sk)
	}
}

func testSlotItems(t *testing.T, db *dynamodb.Client) {
	ctx := context.Background()
	s := newStore(t, db)
	a, b, c := job.NewID(), job.NewID(), job.NewID()
	for _, id := range []string{a, b, c, a} {
		require.NoError(t, s.Acquire(ctx, id, job.KindMigration, 10))
	}
	require.NoError(t, s.Acquire(ctx, a, job.KindAnalysis, 20))
	require.NoError(t, s.Release(ctx, b, job.KindMigration))
	require.NoError(t, s.Release(ctx, b, job.KindMigration))

	assert.Equal(t, num(2), raw(t, db, s, "slots#migration", "count")["held"], "3 taken (one twice), 1 freed (twice)")
	assert.Equal(t, num(1), raw(t, db, s, "slots#analysis", "count")["held"])
	assert.NotEmpty(t, raw(t, db, s, "slots#migration", "job#"+a))
	assert.Empty(t, raw(t, db, s, "slots#migration", "job#"+b))
	assert.NotEmpty(t, raw(t, db, s, "slots#migration", "job#"+c))
}

func testLargeReports(t *testing.T, db *dynamodb.Client) {
	ctx := context.Background()
	s := newStore(t, db)
	j := job.Job{ID: job.NewID(), Kind: job.KindAnalysis}
	require.NoError(t, s.Create(ctx, j))

	var big bytes.Buffer
	big.WriteString(`{"findings":[`)
	for i := range 20_000 {
		fmt.Fprintf(&big, `{"key":"user:%d","type":"hash","issue":"field TTLs are dropped on the target"},`, i)
	}
	big.WriteString(`{}]}`)
	require.Greater(t, big.Len(), 1<<20, "over DynamoDB's item limit uncompressed")
	require.NoError(t, s.PutReport(ctx, j.ID, job.ReportAnalysis, big.Bytes()))
	got, err := s.Report(ctx, j.ID, job.ReportAnalysis)
	require.NoError(t, err)
	assert.Equal(t, big.String(), string(got))
	item := raw(t, db, s, "job#"+j.ID, "report#analysis")
	assert.Equal(t, str("gzip"), item["encoding"])
	assert.Less(t, len(item["body"].(*types.AttributeValueMemberB).Value), 400_000)

	noise := make([]byte, 500_000)
	_, _ = crand.Read(noise)
	err = s.PutReport(ctx, j.ID, job.ReportValidation, noise)
	assert.ErrorIs(t, err, job.ErrInvalid, "a report that cannot fit in an item")
	_, err = s.Report(ctx, j.ID, job.ReportValidation)
	assert.ErrorIs(t, err, job.ErrNotFound)

	assert.ErrorIs(t, s.PutReport(ctx, j.ID, strings.Repeat("n", 201), nil), job.ErrInvalid, "a name too long for a sort key")
	require.NoError(t, s.PutReport(ctx, j.ID, "empty", nil))
	got, err = s.Report(ctx, j.ID, "empty")
	require.NoError(t, err)
	assert.Empty(t, got)
}

func testListTokens(t *testing.T, db *dynamodb.Client) {
	ctx := context.Background()
	s := newStore(t, db)
	for range 3 {
		require.NoError(t, s.Create(ctx, job.Job{ID: job.NewID(), Kind: job.KindAnalysis}))
	}
	_, next, err := s.List(ctx, job.ListOptions{Limit: 2})
	require.NoError(t, err)
	require.NotEmpty(t, next)
	raw, err := base64.RawURLEncoding.DecodeString(next)
	require.NoError(t, err, "the token is base64url")

	bad := []string{
		base64.RawURLEncoding.EncodeToString([]byte("garbage")),
		base64.RawURLEncoding.EncodeToString([]byte("2025-06-01T12:00:00.000000000Z#a/b")),
		base64.RawURLEncoding.EncodeToString([]byte("yesterday#" + job.NewID())),
		base64.StdEncoding.EncodeToString(raw) + "==",
	}
	for _, token := range bad {
		_, _, err := s.List(ctx, job.ListOptions{Limit: 2, Next: token})
		assert.ErrorIs(t, err, job.ErrInvalid, "token %q", token)
	}
}

// hookClient runs before once, just before the first conditional UpdateItem
// that returns the new item (a Transition's or an Update's write).
type hookClient struct {
	dynamo.Client
	once   sync.Once
	before func()
}

func (h *hookClient) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if in.ReturnValues == types.ReturnValueAllNew {
		h.once.Do(h.before)
	}
	return h.Client.UpdateItem(ctx, in, opts...)
}

func testConcurrentWriters(t *testing.T, db *dynamodb.Client) {
	ctx := context.Background()
	setup := func(t *testing.T, before func(other *dynamo.Store, id string)) (*dynamo.Store, string) {
		other := newStore(t, db)
		j := job.Job{ID: job.NewID(), Kind: job.KindMigration, Mode: job.ModeCommand}
		require.NoError(t, other.Create(ctx, j))
		for _, st := range []job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning} {
			_, err := other.Transition(ctx, j.ID, st, nil)
			require.NoError(t, err)
		}
		hooked, err := dynamo.New(&hookClient{Client: db, before: func() { before(other, j.ID) }}, other.Table())
		require.NoError(t, err)
		return hooked, j.ID
	}

	t.Run("a transition that loses to another reads again and applies to the new status", func(t *testing.T) {
		s, id := setup(t, func(other *dynamo.Store, id string) {
			_, err := other.Transition(ctx, id, job.StatusValidating, func(j *job.Job) { j.Stage = "validating" })
			require.NoError(t, err)
		})
		calls := 0
		got, err := s.Transition(ctx, id, job.StatusPaused, func(j *job.Job) { calls++; j.Error = "interrupted" })
		require.NoError(t, err, "validating -> paused is allowed too")
		assert.Equal(t, job.StatusPaused, got.Status)
		assert.Equal(t, "validating", got.Stage, "the other writer's change is kept")
		assert.Equal(t, "interrupted", got.Error)
		assert.Equal(t, 2, calls, "mut ran on the first read and again on the second")
	})
	t.Run("a transition that the new status no longer allows is refused", func(t *testing.T) {
		s, id := setup(t, func(other *dynamo.Store, id string) {
			_, err := other.Transition(ctx, id, job.StatusSucceeded, nil)
			require.NoError(t, err)
		})
		_, err := s.Transition(ctx, id, job.StatusPaused, nil)
		var te *job.TransitionError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, job.StatusSucceeded, te.From)
		stored, err := s.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, job.StatusSucceeded, stored.Status)
	})
	t.Run("updates of different fields both land", func(t *testing.T) {
		s, id := setup(t, func(other *dynamo.Store, id string) {
			_, err := other.Update(ctx, id, func(j *job.Job) { j.TaskARN = "arn:aws:ecs:eu-west-1:1:task/c/t" })
			require.NoError(t, err)
		})
		got, err := s.Update(ctx, id, func(j *job.Job) { j.Stage = "cutover" })
		require.NoError(t, err)
		assert.Equal(t, "cutover", got.Stage)
		assert.Equal(t, "arn:aws:ecs:eu-west-1:1:task/c/t", got.TaskARN, "Update writes only what its mutation changed")
		stored, err := s.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, got, stored, "Update returns the stored job")
	})
	t.Run("a field cleared by a mutation is removed", func(t *testing.T) {
		s, id := setup(t, func(*dynamo.Store, string) {})
		_, err := s.Update(ctx, id, func(j *job.Job) { j.Stage = "" })
		require.NoError(t, err)
		stored, err := s.Get(ctx, id)
		require.NoError(t, err)
		assert.Empty(t, stored.Stage)
	})
}

func testListBudget(t *testing.T, db *dynamodb.Client) {
	ctx := context.Background()
	s := newStore(t, db)
	dynamo.SetListBudget(s, 2, 2) // a List reads at most 2 queries of 2 jobs
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	want := job.Job{ID: job.NewID(), Kind: job.KindAnalysis, CreatedAt: base}
	require.NoError(t, s.Create(ctx, want))
	for i := range 6 { // newer migration jobs that the filter skips
		require.NoError(t, s.Create(ctx, job.Job{ID: job.NewID(), Kind: job.KindMigration, CreatedAt: base.Add(time.Duration(i+1) * time.Minute)}))
	}

	page, next, err := s.List(ctx, job.ListOptions{Kind: job.KindAnalysis, Limit: 1})
	require.NoError(t, err)
	assert.Empty(t, page, "4 jobs read, none matches")
	require.NotEmpty(t, next, "and the token continues after them")

	page, next, err = s.List(ctx, job.ListOptions{Kind: job.KindAnalysis, Limit: 1, Next: next})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, want.ID, page[0].ID)
	assert.Empty(t, next, "the index is read to its end")
}

// conflictClient cancels the first n transactions the way DynamoDB does
// when another transaction holds one of their items.
type conflictClient struct {
	dynamo.Client
	n, calls int
}

func (c *conflictClient) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, opts ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	c.calls++
	if c.calls <= c.n {
		return nil, &types.TransactionCanceledException{
			Message:             aws.String("Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]"),
			CancellationReasons: []types.CancellationReason{{Code: aws.String("None")}, {Code: aws.String("TransactionConflict")}},
		}
	}
	return c.Client.TransactWriteItems(ctx, in, opts...)
}

func testTransactionConflicts(t *testing.T, db *dynamodb.Client) {
	ctx := context.Background()
	table := newStore(t, db).Table()
	c := &conflictClient{Client: db, n: 3}
	s, err := dynamo.New(c, table)
	require.NoError(t, err)

	id := job.NewID()
	require.NoError(t, s.Acquire(ctx, id, job.KindMigration, 1))
	assert.Equal(t, 4, c.calls, "3 conflicts, then the transaction went through")
	assert.ErrorIs(t, s.Acquire(ctx, job.NewID(), job.KindMigration, 1), job.ErrLimit, "the slot is taken")

	c.calls, c.n = 0, 2
	require.NoError(t, s.Release(ctx, id, job.KindMigration))
	assert.Equal(t, 3, c.calls)
	assert.NoError(t, s.Acquire(ctx, job.NewID(), job.KindMigration, 1), "the slot is free again")
}

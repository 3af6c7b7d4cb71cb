package ecstasks_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/api/ecstasks"
	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// ECS on moto's server. What moto (5.1.22) does differently from ECS, and
// how the test deals with it:
//   - A task's lastStatus runs to STOPPED as soon as it is described
//     (moto's state manager progresses "immediately" by default): the test
//     sets ecs::task transitions to manual, so that a running task stays
//     RUNNING until it is stopped.
//   - RunTask of a Fargate task (networkMode awsvpc) needs a subnet of
//     moto's EC2: the test takes one of its default VPC's (EC2's query API,
//     DescribeSubnets, signed by hand: the SDK's EC2 client is not a
//     dependency of kvmigrate).
//   - StopTask of a task that moto does not know raises a plain exception
//     (HTTP 500) where ECS answers InvalidParameterException "The referenced
//     task was not found.": that answer is classified in classify_test.go,
//     not here.
//   - moto describes a task's containers with "cpu" (and "memory") as
//     JSON numbers where ECS sends strings, which the SDK refuses to
//     decode (RunTask, DescribeTasks and StopTask all return the task): the
//     test's HTTP client turns those numbers into strings (motoNumbers),
//     and changes nothing else.
//
// Everything else here is moto's real ECS API: CreateCluster,
// RegisterTaskDefinition, RunTask (FARGATE), StopTask, DescribeTasks and
// ClusterNotFoundException.

const family = "kvmigrate-shake-task"

type world struct {
	client *ecs.Client
	subnet string
}

// motoNumbers turns the numbers moto sends as a task's containers' cpu
// and memory into the strings that ECS sends (see above).
type motoNumbers struct{ base http.RoundTripper }

var containerNumbers = regexp.MustCompile(`"(cpu|memory)": ?(\d+)`)

func (m motoNumbers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := m.base.RoundTrip(r)
	switch r.Header.Get("X-Amz-Target") {
	case "AmazonEC2ContainerServiceV20141113.RunTask", "AmazonEC2ContainerServiceV20141113.DescribeTasks",
		"AmazonEC2ContainerServiceV20141113.StopTask":
	default:
		return resp, err // (a container definition's cpu is a number)
	}
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	body = containerNumbers.ReplaceAll(body, []byte(`"$1": "$2"`))
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// defaultSubnet returns a subnet of moto's default VPC (EC2
// DescribeSubnets).
func defaultSubnet(t *testing.T, url string) string {
	t.Helper()
	body := "Action=DescribeSubnets&Version=2016-11-15"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	cfg := awstest.Config(url)
	creds, err := cfg.Credentials.Retrieve(t.Context())
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(body))
	require.NoError(t, v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), "ec2", awstest.Region, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Subnets []string `xml:"subnetSet>item>subnetId"`
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, xml.NewDecoder(resp.Body).Decode(&out))
	require.NotEmpty(t, out.Subnets, "moto's default VPC has subnets")
	return out.Subnets[0]
}

func newWorld(t *testing.T) *world {
	t.Helper()
	url := awstest.StartMoto(t)
	// Keep tasks RUNNING until they are stopped (see above).
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/moto-api/state-manager/set-transition",
		strings.NewReader(`{"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "moto's state manager")

	w := &world{subnet: defaultSubnet(t, url), client: ecs.NewFromConfig(awstest.Config(url), func(o *ecs.Options) {
		o.HTTPClient = &http.Client{Transport: motoNumbers{http.DefaultTransport}}
	})}
	_, err = w.client.RegisterTaskDefinition(t.Context(), &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(family),
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityFargate},
		NetworkMode:             types.NetworkModeAwsvpc,
		Cpu:                     aws.String("1024"),
		Memory:                  aws.String("2048"),
		ContainerDefinitions: []types.ContainerDefinition{{
			Name: aws.String("shake-task"), Image: aws.String("123456789012.dkr.ecr.us-east-1.amazonaws.com/kvmigrate-shake-task:v1"),
			Essential:         aws.Bool(true),
			MemoryReservation: aws.Int32(2048), // moto's RunTask sums the containers' memory
		}},
	})
	require.NoError(t, err)
	return w
}

// cluster creates a cluster and returns its ARN.
func (w *world) cluster(t *testing.T, name string) string {
	t.Helper()
	out, err := w.client.CreateCluster(t.Context(), &ecs.CreateClusterInput{ClusterName: aws.String(name)})
	require.NoError(t, err)
	return aws.ToString(out.Cluster.ClusterArn)
}

// run runs a shake-task in cluster and returns its ARN.
func (w *world) run(t *testing.T, cluster string) string {
	t.Helper()
	out, err := w.client.RunTask(t.Context(), &ecs.RunTaskInput{
		Cluster: aws.String(cluster), TaskDefinition: aws.String(family), LaunchType: types.LaunchTypeFargate,
		NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
			Subnets: []string{w.subnet}, SecurityGroups: []string{"sg-0123456789abcdef0"}, AssignPublicIp: types.AssignPublicIpDisabled,
		}},
	})
	require.NoError(t, err)
	require.Len(t, out.Tasks, 1)
	return aws.ToString(out.Tasks[0].TaskArn)
}

func (w *world) describe(t *testing.T, cluster, taskARN string) types.Task {
	t.Helper()
	out, err := w.client.DescribeTasks(t.Context(), &ecs.DescribeTasksInput{Cluster: aws.String(cluster), Tasks: []string{taskARN}})
	require.NoError(t, err)
	require.Len(t, out.Tasks, 1, "task %s", taskARN)
	return out.Tasks[0]
}

func TestStopsAShakeTaskOnECS(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	clusterARN := w.cluster(t, "kvmigrate-ShakeCluster-AbC123")
	tasks, err := ecstasks.New(w.client, clusterARN)
	require.NoError(t, err)

	arn := w.run(t, clusterARN)
	require.Contains(t, arn, ":task/kvmigrate-ShakeCluster-AbC123/", "the long ARN format names the cluster")
	before := w.describe(t, clusterARN, arn)
	require.Equal(t, "RUNNING", aws.ToString(before.LastStatus))
	require.Equal(t, "RUNNING", aws.ToString(before.DesiredStatus))
	require.Empty(t, aws.ToString(before.StoppedReason))

	// A reason beyond ECS's 255 characters, with a 2-byte rune across the
	// bound: it is cut before that rune.
	reason := "kvmigrate: job 01jd8z3k4m5n6p7q8r9s0t1v2w stopped by request: " + strings.Repeat("x", 192) + "é and the rest"
	require.Equal(t, "é", reason[ecstasks.MaxReason-1:ecstasks.MaxReason+1], "the rune across the bound")
	require.NoError(t, tasks.Stop(ctx, arn, reason))

	got := w.describe(t, clusterARN, arn)
	assert.Equal(t, "STOPPED", aws.ToString(got.LastStatus))
	assert.Equal(t, "STOPPED", aws.ToString(got.DesiredStatus))
	want := reason[:ecstasks.MaxReason-1]
	assert.Equal(t, want, aws.ToString(got.StoppedReason), "the reason, cut to ECS's limit on a rune boundary")
	assert.True(t, utf8.ValidString(aws.ToString(got.StoppedReason)))

	t.Run("stopping a stopped task again is not an error", func(t *testing.T) {
		assert.NoError(t, tasks.Stop(ctx, arn, "again"))
		assert.Equal(t, "STOPPED", aws.ToString(w.describe(t, clusterARN, arn).LastStatus))
	})
	t.Run("stops a task whose ARN has the old format in the configured cluster", func(t *testing.T) {
		long := w.run(t, clusterARN)
		id := long[strings.LastIndexByte(long, '/')+1:]
		old := "arn:aws:ecs:us-east-1:123456789012:task/" + id
		require.NoError(t, tasks.Stop(ctx, old, "old format"))
		got := w.describe(t, clusterARN, long)
		assert.Equal(t, "STOPPED", aws.ToString(got.DesiredStatus))
		assert.Equal(t, "old format", aws.ToString(got.StoppedReason))

		anyCluster, err := ecstasks.New(w.client, "")
		require.NoError(t, err)
		assert.ErrorIs(t, anyCluster.Stop(ctx, old, "r"), job.ErrInvalid, "no cluster to stop it in")
	})
	t.Run("refuses a task of another cluster and leaves it running", func(t *testing.T) {
		other := w.cluster(t, "someone-else")
		theirs := w.run(t, other)
		assert.ErrorIs(t, tasks.Stop(ctx, theirs, "not ours"), job.ErrInvalid)
		got := w.describe(t, other, theirs)
		assert.Equal(t, "RUNNING", aws.ToString(got.DesiredStatus))
		assert.Equal(t, "RUNNING", aws.ToString(got.LastStatus))
	})
	t.Run("says a task whose cluster does not exist is gone", func(t *testing.T) {
		anyCluster, err := ecstasks.New(w.client, "")
		require.NoError(t, err)
		err = anyCluster.Stop(ctx, "arn:aws:ecs:us-east-1:123456789012:task/deleted-cluster/0123456789abcdef0123456789abcdef", "r")
		assert.ErrorIs(t, err, api.ErrTaskGone)
		var notFound *types.ClusterNotFoundException
		assert.ErrorAs(t, err, &notFound, "ECS's error is kept")
	})
	t.Run("refuses what is not a task ARN", func(t *testing.T) {
		for _, bad := range []string{
			"",
			"0123456789abcdef",
			"arn:aws:states:us-east-1:123456789012:execution:m:0123",
			"arn:aws:ecs:us-east-1:123456789012:cluster/kvmigrate-ShakeCluster-AbC123",
			"arn:aws:ecs:us-east-1:123456789012:task/kvmigrate-ShakeCluster-AbC123/",
			"arn:aws:ecs:us-east-1:123456789012:task/kvmigrate-ShakeCluster-AbC123/a/b",
		} {
			assert.ErrorIs(t, tasks.Stop(ctx, bad, "r"), job.ErrInvalid, "%q", bad)
		}
	})
	t.Run("says a service that does not answer is transient", func(t *testing.T) {
		down := ecs.NewFromConfig(awstest.Config("http://127.0.0.1:1"), func(o *ecs.Options) { o.RetryMaxAttempts = 1 })
		d, err := ecstasks.New(down, clusterARN)
		require.NoError(t, err)
		var transient *phase.TransientError
		assert.ErrorAs(t, d.Stop(ctx, arn, "r"), &transient)
	})
}

func TestNewChecksTheCluster(t *testing.T) {
	client := ecs.New(ecs.Options{Region: awstest.Region})
	for _, ok := range []string{"", "kvmigrate-ShakeCluster-AbC123", "arn:aws:ecs:eu-west-1:123456789012:cluster/kv_1"} {
		_, err := ecstasks.New(client, ok)
		assert.NoError(t, err, "%q", ok)
	}
	for _, bad := range []string{"has space", "arn:aws:ecs:eu-west-1:123456789012:service/kv/s", "arn:aws:sqs:eu-west-1:123456789012:cluster/kv", strings.Repeat("c", 256)} {
		_, err := ecstasks.New(client, bad)
		assert.ErrorIs(t, err, job.ErrInvalid, "%q", bad)
	}
	_, err := ecstasks.New(nil, "kv")
	assert.Error(t, err)
}

func TestTruncateKeepsWholeRunes(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 255, "short"},
		{"abcdef", 3, "abc"},
		{"abé", 3, "ab"},  // é is 2 bytes: cut before it
		{"ab€", 4, "ab"},  // € is 3 bytes
		{"ab€", 5, "ab€"}, // exactly fits
		{"€€", 1, ""},     // nothing fits
		{"a😀b", 4, "a"},   // 4-byte rune
		{"a😀b", 5, "a😀"},  // fits
	} {
		got := ecstasks.Truncate(c.in, c.n)
		assert.Equal(t, c.want, got, "Truncate(%q, %d)", c.in, c.n)
		assert.LessOrEqual(t, len(got), c.n)
	}
}

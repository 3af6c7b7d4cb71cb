package validation_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// Big hashes with per-field expiry: too big for the full comparison
// (FullMax 100), so their field TTLs go through the streamed digest.
const (
	bigFields = 5000
	// fieldExpiry: a field i with i%3 == 0 expires at base + i*10 s +
	// 1999 ms, the last millisecond of a 2-second window (base is a
	// multiple of 10 s), so that an expiry a millisecond later crosses a
	// whole multiple of the 2 s tolerance; i%3 == 1 at base + 1 h + i*10 s,
	// the first millisecond of a window; i%3 == 2 never.
	fieldTol = 2 * time.Second
)

func fieldName(i int) string { return "f\x00" + strconv.Itoa(i) }

func fieldExpiry(base int64, i int) int64 {
	switch i % 3 {
	case 0:
		return base + int64(i)*10_000 + 1999
	case 1:
		return base + 3_600_000 + int64(i)*10_000
	}
	return -1
}

// seedFieldTTLHash writes a bigFields-field hash whose fields expire as
// fieldExpiry says; withTTL false leaves the expiries out (for a target
// that cannot hold them).
func seedFieldTTLHash(t *testing.T, c valkey.Client, key string, base int64, withTTL bool) {
	t.Helper()
	var cmds valkey.Commands
	for lo := 0; lo < bigFields; lo += 1000 {
		fv := c.B().Hset().Key(key).FieldValue()
		for i := lo; i < lo+1000; i++ {
			fv = fv.FieldValue(fieldName(i), "value-"+strconv.Itoa(i*7))
		}
		cmds = append(cmds, fv.Build())
	}
	do(t, c, cmds...)
	if !withTTL {
		return
	}
	cmds = cmds[:0]
	for i := range bigFields {
		if at := fieldExpiry(base, i); at >= 0 {
			cmds = append(cmds, c.B().Hpexpireat().Key(key).UnixTimeMilliseconds(at).Fields().Numfields(1).Field(fieldName(i)).Build())
		}
	}
	do(t, c, cmds...)
}

// dumpRestore copies keys with DUMP and RESTORE: the server's own copy,
// which carries each field's expiry instant as is.
func dumpRestore(t *testing.T, src, dst valkey.Client, keys ...string) {
	t.Helper()
	ctx := context.Background()
	for _, k := range keys {
		payload, err := src.Do(ctx, src.B().Dump().Key(k).Build()).ToString()
		require.NoError(t, err)
		do(t, dst, dst.B().Restore().Key(k).Ttl(0).SerializedValue(payload).Replace().Build())
	}
}

// relativeCopy copies a hash as a command-mode copier that carries field
// TTLs as remaining time would: HSET, then HPEXPIRE with each field's
// HPTTL. The target's instants come out a few milliseconds later.
func relativeCopy(t *testing.T, src, dst valkey.Client, key string) {
	t.Helper()
	ctx := context.Background()
	all, err := src.Do(ctx, src.B().Hgetall().Key(key).Build()).AsStrMap()
	require.NoError(t, err)
	fv := dst.B().Hset().Key(key).FieldValue()
	fields := make([]string, 0, len(all))
	for f, v := range all {
		fv = fv.FieldValue(f, v)
		fields = append(fields, f)
	}
	do(t, dst, fv.Build())
	ttls, err := src.Do(ctx, src.B().Hpttl().Key(key).Fields().Numfields(int64(len(fields))).Field(fields...).Build()).AsIntSlice()
	require.NoError(t, err)
	var cmds valkey.Commands
	for i, ttl := range ttls {
		if ttl > 0 {
			cmds = append(cmds, dst.B().Hpexpire().Key(key).Milliseconds(ttl).Fields().Numfields(1).Field(fields[i]).Build())
		}
	}
	do(t, dst, cmds...)
}

func TestBigHashFieldTTLs(t *testing.T) {
	// Validation reads as a user that may not write.
	const acl = "user reader on >reader-pw ~* +@read +@connection +info -@write"
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"), kvtest.WithACL(acl))
	dst := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"), kvtest.WithACL(acl))
	sc, dc := src.Client(t), dst.Client(t)
	reader := func(s *kvtest.Server) string {
		return fmt.Sprintf("%s://reader:reader-pw@%s", s.Engine.Kind, s.Addr())
	}
	o := validation.Options{TTLTolerance: fieldTol}
	base := (time.Now().Add(2*time.Hour).UnixMilli() / 10_000) * 10_000
	keys := []string{"h:clean", "h:lost", "h:hour", "h:within", "h:within-later"}
	for _, k := range keys {
		seedFieldTTLHash(t, sc, k, base, true)
	}
	dumpRestore(t, sc, dc, keys...)

	rep := validate(t, reader(src), reader(dst), o)
	require.True(t, rep.Passed, "a DUMP/RESTORE copy carries every field's expiry: %+v", rep.Issues)
	require.Equal(t, 5, rep.Sample.Digest, "the five hashes are compared by digest, not in full")
	require.Zero(t, rep.Sample.Full)
	require.Empty(t, rep.CountOnly)

	// Damage the target.
	at := func(key string, i int) int64 {
		ats, err := dc.Do(context.Background(), dc.B().Hpexpiretime().Key(key).Fields().Numfields(1).Field(fieldName(i)).Build()).AsIntSlice()
		require.NoError(t, err)
		require.Equal(t, fieldExpiry(base, i), ats[0], "%s field %d before the damage", key, i)
		return ats[0]
	}
	lost := fieldName(300)
	do(t, dc, dc.B().Hpersist().Key("h:lost").Fields().Numfields(1).Field(lost).Build())
	hour := fieldName(1201)
	do(t, dc, dc.B().Hpexpireat().Key("h:hour").UnixTimeMilliseconds(at("h:hour", 1201)+3_600_000).Fields().Numfields(1).Field(hour).Build())
	// 1 s later, across a whole multiple of the tolerance: a digest of
	// expiries rounded to the tolerance alone would differ here.
	do(t, dc, dc.B().Hpexpireat().Key("h:within").UnixTimeMilliseconds(at("h:within", 42)+1000).Fields().Numfields(1).Field(fieldName(42)).Build())
	do(t, dc, dc.B().Hpexpireat().Key("h:within-later").UnixTimeMilliseconds(at("h:within-later", 4999)-1500).Fields().Numfields(1).Field(fieldName(4999)).Build())
	for _, k := range keys {
		n, err := dc.Do(context.Background(), dc.B().Hlen().Key(k).Build()).AsInt64()
		require.NoError(t, err)
		require.Equal(t, int64(bigFields), n, "%s: the damage keeps the field count", k)
	}

	rep = validate(t, reader(src), reader(dst), o)
	assert.False(t, rep.Passed)
	assert.Equal(t, []string{"ttl h:hour", "ttl h:lost"}, kinds(rep.Issues),
		"exactly the lost and the moved field TTL; the two moved within the tolerance pass")
	details := map[string]string{}
	for _, is := range rep.Issues {
		details[is.Key] = is.Detail
		assert.Equal(t, "hash", is.Type)
	}
	assert.Contains(t, details["h:lost"], "hash field TTLs differ in 1 of 5000 fields")
	assert.Contains(t, details["h:lost"], "field "+validation.DisplayName(lost)+": TTL lost: the source field expires in ")
	assert.Contains(t, details["h:hour"], "hash field TTLs differ in 1 of 5000 fields")
	assert.Contains(t, details["h:hour"], "field "+validation.DisplayName(hour)+": TTL differs: the source field expires in ")
	assert.Contains(t, details["h:hour"], "(1h0m0s later; tolerance 2s)")
	assert.Equal(t, 5, rep.Sample.Digest)
	assert.Empty(t, rep.CountOnly)

	t.Run("a field TTL only on the target, where the source has none in that database, is found", func(t *testing.T) {
		const db = 1
		sdb, ddb := src.ClientDB(t, db), dst.ClientDB(t, db)
		for _, c := range []valkey.Client{sdb, ddb} {
			seedFieldTTLHash(t, c, "h:plain", base, false)
			do(t, c, c.B().Hset().Key("small").FieldValue().FieldValue("a", "1").FieldValue("b", "2").Build())
		}
		do(t, ddb, ddb.B().Hpexpireat().Key("h:plain").UnixTimeMilliseconds(base).Fields().Numfields(1).Field(fieldName(7)).Build(),
			ddb.B().Hpexpireat().Key("small").UnixTimeMilliseconds(base).Fields().Numfields(1).Field("b").Build())
		o := o
		o.DBs = []int{db}
		rep := validate(t, reader(src)+"/1", reader(dst)+"/1", o)
		assert.Equal(t, []string{"ttl h:plain", "ttl small"}, kinds(rep.Issues))
		for _, is := range rep.Issues {
			switch is.Key {
			case "h:plain":
				assert.Contains(t, is.Detail, "hash field TTLs differ in 1 of 5000 fields (1 gained one; compared field by field): field "+
					validation.DisplayName(fieldName(7))+": TTL added: the target field expires in ")
			case "small":
				assert.Contains(t, is.Detail, "field b: TTL added: the target field expires in ")
			}
		}
	})

	t.Run("where neither side has a field TTL in the database, no field expiry is read", func(t *testing.T) {
		const db = 2
		for _, c := range []valkey.Client{src.ClientDB(t, db), dst.ClientDB(t, db)} {
			seedFieldTTLHash(t, c, "h:plain", base, false)
			do(t, c, c.B().Hset().Key("small").FieldValue().FieldValue("a", "1").Build())
		}
		calls := func(s *kvtest.Server) map[string]string {
			text, err := s.Client(t).Do(context.Background(), s.Client(t).B().Info().Section("commandstats").Build()).ToString()
			require.NoError(t, err)
			out := map[string]string{}
			for _, cmd := range []string{"hpexpiretime", "hpttl"} {
				_, rest, _ := strings.Cut(text, "cmdstat_"+cmd+":calls=")
				out[cmd], _, _ = strings.Cut(rest, ",")
			}
			return out
		}
		before := []map[string]string{calls(src), calls(dst)}
		o := o
		o.DBs = []int{db}
		rep := validate(t, reader(src)+"/2", reader(dst)+"/2", o)
		assert.True(t, rep.Passed, "%+v", rep.Issues)
		assert.Equal(t, 1, rep.Sample.Digest)
		assert.Equal(t, 1, rep.Sample.Full)
		assert.Equal(t, before, []map[string]string{calls(src), calls(dst)}, "HPEXPIRETIME and HPTTL calls on the source and the target")
	})

	t.Run("a copy that carries field TTLs as remaining time, a few ms later each, passes", func(t *testing.T) {
		rel := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"), kvtest.WithACL(acl))
		for _, k := range keys {
			relativeCopy(t, sc, rel.Client(t), k)
		}
		o := o
		o.DBs = []int{0} // the subtests above wrote databases 1 and 2
		rep := validate(t, reader(src), reader(rel), o)
		assert.True(t, rep.Passed, "%+v", rep.Issues)
		assert.Equal(t, 5, rep.Sample.Digest)
		assert.Empty(t, rep.CountOnly)
	})

	t.Run("a target without per-field expiry: the fields that would never expire there are an issue", func(t *testing.T) {
		without := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"), kvtest.WithACL(acl))
		for _, k := range keys {
			seedFieldTTLHash(t, without.Client(t), k, base, false)
		}
		o := o
		o.DBs = []int{0}
		rep := validate(t, reader(src), reader(without), o)
		assert.False(t, rep.Passed)
		require.Len(t, rep.Issues, len(keys), "%+v", rep.Issues)
		for _, is := range rep.Issues {
			assert.Equal(t, validation.IssueTTL, is.Kind)
			assert.Equal(t, "3334 of 5000 fields have a TTL on the source; the target has no per-field expiry, so they never expire there", is.Detail, is.Key)
		}
		assert.Equal(t, 5, rep.Sample.Digest, "the content is still compared by digest")
	})
}

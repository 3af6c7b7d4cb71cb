package topology

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAcceptsFollowsEachEnginesRDBRange(t *testing.T) {
	cases := []struct {
		name    string
		info    Info
		v       int
		accepts bool
	}{
		{"redis 7.0 takes its own version", Info{Engine: Redis, Version: "7.0.15"}, 10, true},
		{"redis 7.0 refuses valkey 8's RDB 11", Info{Engine: Redis, Version: "7.0.15"}, 11, false},
		{"redis 7.2 takes RDB 11", Info{Engine: Redis, Version: "7.2.4"}, 11, true},
		{"redis 8.0 takes valkey 8's RDB 11", Info{Engine: Redis, Version: "8.0.2"}, 11, true},
		{"redis 8.0 refuses valkey 9's RDB 80", Info{Engine: Redis, Version: "8.0.2"}, 80, false},
		{"valkey 8.0 refuses redis 8's RDB 12", Info{Engine: Valkey, Version: "8.0.1"}, 12, false},
		{"valkey 8.1 relaxed still refuses RDB 12", Info{Engine: Valkey, Version: "8.1.1", RDBRelaxed: true}, 12, false},
		{"valkey 8.1 relaxed takes valkey 9's RDB 80", Info{Engine: Valkey, Version: "8.1.1", RDBRelaxed: true}, 80, true},
		{"valkey 8.1 strict refuses RDB 80", Info{Engine: Valkey, Version: "8.1.1"}, 80, false},
		{"valkey 9 refuses redis 7.4's RDB 12", Info{Engine: Valkey, Version: "9.0.0"}, 12, false},
		{"valkey 9 takes redis 7.0's RDB 10", Info{Engine: Valkey, Version: "9.0.0"}, 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.accepts, tc.info.Accepts(tc.v))
		})
	}
}

func TestPayloadRDBVersionReadsTheTrailer(t *testing.T) {
	// A real Redis 8.0 DUMP of "b": value, then version 12 LE, then CRC64.
	v, err := PayloadRDBVersion("\x00\x01b\x0c\x00\xddR\x8cQ\\\xc9\x8c\xca")
	assert.NoError(t, err)
	assert.Equal(t, 12, v)
	_, err = PayloadRDBVersion("short")
	assert.Error(t, err)
}

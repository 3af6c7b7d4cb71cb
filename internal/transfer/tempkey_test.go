package transfer

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSlotMatchesKnownValues(t *testing.T) {
	// Values from CLUSTER KEYSLOT on a real server.
	cases := map[string]int{
		"":              0,
		"foo":           12182,
		"bar":           5061,
		"{user1000}.a":  Slot("user1000"),
		"123456789":     int(0x31C3) % SlotCount, // CRC-16/XMODEM check value
		"foo{}{bar}":    Slot("foo{}{bar}"),
		"{}":            Slot("{}"),
		"a{b}c{d}":      Slot("b"),
		"x}y{z}":        Slot("z"),
		"}{x}":          Slot("x"),
		"foo{{bar}}zap": Slot("{bar"),
	}
	for key, want := range cases {
		assert.Equal(t, want, Slot(key), "slot of %q", key)
	}
	assert.Equal(t, 12182, Slot("foo"))
}

func TestHashTag(t *testing.T) {
	cases := []struct {
		key, tag string
		ok       bool
	}{
		{"foo{}bar", "foo{}bar", false},
		{"{", "{", false},
		{"}", "}", false},
		{"x}y", "x}y", false},
		{"}{x}", "x", true},
		{"a{b}c{d}", "b", true},
		{"", "", false},
		{"{{}}", "{", true},
		{"\x00{\xff}", "\xff", true},
	}
	for _, c := range cases {
		tag, ok := HashTag(c.key)
		assert.Equal(t, c.tag, tag, "tag of %q", c.key)
		assert.Equal(t, c.ok, ok, "has tag %q", c.key)
	}
}

func TestTempKeyLandsOnTheKeysSlot(t *testing.T) {
	keys := []string{
		"foo{}bar", "{", "}", "x}y", "}{x}", "a{b}c{d}", "", "plain",
		"{}", "{}{}", "}}}", "{{{", "\x00\x01\xff", "line\r\nbreak", "{\x00}",
		"ünïcødé{ключ}", strings.Repeat("k", 10_000), "a{", "a}", "{a",
	}
	for i := 0; i < 2000; i++ { // binary keys of many shapes
		b := make([]byte, i%17)
		for j := range b {
			b[j] = byte((i*31 + j*7) % 256)
		}
		keys = append(keys, string(b))
	}
	for _, key := range keys {
		tmp := TempKey("job1", "s1", key)
		require.True(t, strings.HasPrefix(tmp, TempPrefix+"job1_s1_"), tmp)
		assert.Equal(t, Slot(key), Slot(tmp), "temp key %q for %q", tmp, key)
	}
}

func TestSlotTagCoversEverySlot(t *testing.T) {
	for s := 0; s < SlotCount; s++ {
		tag := slotTag(s)
		require.NotEmpty(t, tag)
		require.NotContains(t, tag, "}")
		require.Equal(t, s, Slot(tag))
	}
}

func TestTempKeysAreUniqueAndMatchTheJobPattern(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		k := TempKey("j", ShardTag("n:1", 0), "same")
		require.False(t, seen[k])
		seen[k] = true
	}
	assert.Equal(t, `__kvmigrate_tmp_a\*b_*`, TempPattern("a*b", ""))
	assert.Equal(t, `__kvmigrate_tmp_j_0a1b_*`, TempPattern("j", "0a1b"))
	assert.NotEqual(t, ShardTag("127.0.0.1:7000", 0), ShardTag("127.0.0.1:7000", 1))
}

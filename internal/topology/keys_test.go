package topology

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKeyFilters(t *testing.T) {
	for _, typ := range append([]string{""}, KeyTypes...) {
		assert.NoError(t, CheckKeyType(typ), typ)
	}
	err := CheckKeyType("document")
	if assert.Error(t, err) {
		assert.Equal(t, `type "document" is not one of string, list, set, zset, hash, stream`, err.Error())
	}
	assert.Equal(t, "", FilterFlags("", ""))
	assert.Equal(t, `--match "user:*" --type hash`, FilterFlags("user:*", "hash"))
	assert.Equal(t, `--match "a\"b\n"`, FilterFlags("a\"b\n", ""))
	assert.Equal(t, `--type zset`, FilterFlags("", "zset"))
}

func TestMatchGlobFollowsRedis(t *testing.T) {
	for _, c := range []struct {
		pattern, key string
		want         bool
	}{
		{"user:*", "user:1", true}, {"user:*", "users", false}, {"*", "", false}, {"", "", true},
		{"h?llo", "hallo", true}, {"h[^e]llo", "hello", false}, {"h[a-b]llo", "hbllo", true},
		{"h[b-a]llo", "hallo", true}, {`a\*b`, "a*b", true}, {`a\*b`, "axb", false}, {"a[", "a[", false},
	} {
		assert.Equal(t, c.want, MatchGlob(c.pattern, c.key), "%q ~ %q", c.pattern, c.key)
	}
}

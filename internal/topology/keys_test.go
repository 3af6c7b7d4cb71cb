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

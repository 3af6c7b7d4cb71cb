package transfer

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
)

// SlotCount is the number of hash slots of a Redis/Valkey cluster.
const SlotCount = 16384

// TempPrefix starts every temporary key kvmigrate writes on a target.
const TempPrefix = "__kvmigrate_tmp_"

// crc16 is CRC-16/XMODEM (poly 0x1021), the cluster key hash.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// HashTag returns the part of key that decides its slot: the text between
// the first '{' and the first '}' after it when that text is not empty,
// otherwise the whole key.
func HashTag(key string) (tag string, ok bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key, false
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 { // no closing brace, or "{}"
		return key, false
	}
	return key[open+1 : open+1+end], true
}

// Slot is the cluster hash slot of key.
func Slot(key string) int {
	tag, _ := HashTag(key)
	return int(crc16(tag)) % SlotCount
}

var slotTags struct {
	once sync.Once
	tags [SlotCount]string
}

// slotTag returns a short brace-free tag that hashes to slot. The table is
// built once by trying base-36 counters until every slot has one (about
// 170k tries, a few milliseconds).
func slotTag(slot int) string {
	slotTags.once.Do(func() {
		left := SlotCount
		for n := uint64(0); left > 0; n++ {
			s := strconv.FormatUint(n, 36)
			if i := int(crc16(s)) % SlotCount; slotTags.tags[i] == "" {
				slotTags.tags[i] = s
				left--
			}
		}
	})
	return slotTags.tags[slot]
}

// TempKey names a temporary key for key, owned by a job's shard
// (__kvmigrate_tmp_<job>_<shard>_<random>:{tag}), that lands in the same
// cluster slot as key for every possible key name: the key's own hash tag
// when it has one, otherwise a tag chosen to hash to the key's slot.
// (Wrapping the whole name in braces would break for names holding '}'.)
func TempKey(jobID, shard, key string) string {
	tag, ok := HashTag(key)
	if !ok {
		tag = slotTag(Slot(key))
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	return TempPrefix + jobID + "_" + shard + "_" + hex.EncodeToString(r[:]) + ":{" + tag + "}"
}

// ShardTag names a shard in its temporary keys: 8 hex digits of a hash of
// its node and database.
func ShardTag(node string, db int) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", node, db)
	return fmt.Sprintf("%08x", h.Sum32())
}

// TempPattern is the SCAN MATCH pattern of a job's temporary keys, or of
// one shard's when shard is not empty.
func TempPattern(jobID, shard string) string {
	if shard == "" {
		return TempPrefix + globEscape(jobID) + "_*"
	}
	return TempPrefix + globEscape(jobID) + "_" + shard + "_*"
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

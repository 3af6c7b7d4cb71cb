package topology

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// KeyTypes are the core data types: the values a SCAN TYPE filter of the
// copy, the analysis and the validation accepts (--type).
var KeyTypes = []string{"string", "list", "set", "zset", "hash", "stream"}

// CheckKeyType returns an error naming the accepted types when t is neither
// "" (no filter) nor one of KeyTypes.
func CheckKeyType(t string) error {
	if t == "" || slices.Contains(KeyTypes, t) {
		return nil
	}
	return fmt.Errorf("type %q is not one of %s", t, strings.Join(KeyTypes, ", "))
}

// FilterFlags writes a key filter as the CLI flags that give it, e.g.
// `--match "user:*" --type hash`; "" without a filter.
func FilterFlags(match, typ string) string {
	var parts []string
	if match != "" {
		parts = append(parts, "--match "+strconv.Quote(match))
	}
	if typ != "" {
		parts = append(parts, "--type "+typ)
	}
	return strings.Join(parts, " ")
}

// Package statemachine holds the migration workflow's Amazon States
// Language definition (migration.asl.json), as deployed by template.yaml
// through DefinitionUri and DefinitionSubstitutions. The definition has
// ${...} placeholders, some of them in number positions, so it is JSON only
// once rendered (see internal/sam.Render).
package statemachine

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

//go:embed migration.asl.json
var definition []byte

// Definition returns the definition with its ${...} placeholders.
func Definition() []byte { return append([]byte(nil), definition...) }

// forbiddenFields are the JSONata and variable fields of the Amazon States
// Language. The definition uses JSONPath only: aws-local-stepfunctions, the
// engine the end-to-end tests run it in, ignores these fields silently.
var forbiddenFields = []string{"QueryLanguage", "Assign", "Arguments", "Output", "Items"}

// CheckJSONPath reports every JSONata or variable field ("QueryLanguage",
// "Assign", "Arguments", "Output", "Items") and every JSONata expression
// ("{% ... %}") in a rendered definition; nil if there is none.
func CheckJSONPath(rendered []byte) error {
	var def any
	if err := json.Unmarshal(rendered, &def); err != nil {
		return fmt.Errorf("check definition: %w", err)
	}
	var errs []error
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				if slices.Contains(forbiddenFields, k) {
					errs = append(errs, fmt.Errorf("%s.%s: JSONata/variable field %q", path, k, k))
				}
				walk(v[k], path+"."+k)
			}
		case []any:
			for i, e := range v {
				walk(e, fmt.Sprintf("%s[%d]", path, i))
			}
		case string:
			if strings.Contains(v, "{%") {
				errs = append(errs, fmt.Errorf("%s: JSONata expression %q", path, v))
			}
		}
	}
	walk(def, "$")
	return errors.Join(errs...)
}

// Package statemachine holds the migration workflow's Amazon States
// Language definition (migration.asl.json), as deployed by template.yaml
// through DefinitionUri and DefinitionSubstitutions. The definition has
// ${...} placeholders, some of them in number positions, so it is JSON only
// once rendered (see internal/sam.Render).
package statemachine

import _ "embed"

//go:embed migration.asl.json
var definition []byte

// Definition returns the definition with its ${...} placeholders.
func Definition() []byte { return append([]byte(nil), definition...) }

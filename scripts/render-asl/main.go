// Command render-asl prints the state machine definition with its ${...}
// placeholders replaced by the template's DefinitionSubstitutions (parameter
// defaults, sample ARNs; -set Name=value overrides one), the way
// CloudFormation renders it on deploy. scripts/aws-lint.sh feeds the result
// to asl-validator.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/kvmigrate/kvmigrate/internal/sam"
)

type sets map[string]string

func (s sets) String() string { return fmt.Sprint(map[string]string(s)) }
func (s sets) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want Name=value, got %q", v)
	}
	s[name] = value
	return nil
}

func main() {
	overrides := sets{}
	template := flag.String("template", "template.yaml", "SAM template")
	definition := flag.String("definition", "statemachine/migration.asl.json", "state machine definition")
	machine := flag.String("state-machine", "MigrationStateMachine", "logical id of the state machine resource")
	flag.Var(overrides, "set", "Name=value: substitute value for ${Name} (repeatable)")
	flag.Parse()

	if err := run(*template, *definition, *machine, overrides); err != nil {
		fmt.Fprintln(os.Stderr, "render-asl:", err)
		os.Exit(1)
	}
}

func run(template, definition, machine string, overrides map[string]string) error {
	tmpl, err := sam.Load(template)
	if err != nil {
		return err
	}
	values, err := tmpl.ResolveSubstitutions(machine, overrides)
	if err != nil {
		return err
	}
	def, err := os.ReadFile(definition)
	if err != nil {
		return err
	}
	out, err := sam.Render(def, values)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

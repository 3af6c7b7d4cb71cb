// Package sam reads the SAM application's own files: template.yaml (its
// parameters, mappings, resources and the state machine's
// DefinitionSubstitutions, CloudFormation tags included) and renders the
// state machine definition with values for its ${...} placeholders, the way
// CloudFormation does on deploy. Tests, the ASL linter and the local Step
// Functions harness use it; nothing here talks to AWS.
package sam

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Template is a parsed template.yaml.
type Template struct {
	Parameters map[string]Parameter
	// Mappings: map name → top-level key → second-level key → value.
	Mappings  map[string]map[string]map[string]string
	Resources map[string]Resource
	// Outputs keeps each output's raw YAML.
	Outputs map[string]*yaml.Node
	// Globals is the Globals section (nil if absent).
	Globals *yaml.Node
}

// Parameter is a template parameter; numbers are kept as written.
type Parameter struct {
	Type           string
	Default        string
	HasDefault     bool
	AllowedValues  []string
	AllowedPattern string
	MinValue       string
	MaxValue       string
	MinLength      string
	MaxLength      string
}

// Resource is a template resource; Properties keeps the raw YAML (with its
// CloudFormation tags) for callers to inspect.
type Resource struct {
	Type       string
	Properties *yaml.Node
	Metadata   *yaml.Node
}

// Pseudo parameters, with the sample values Resolve uses.
var Pseudo = map[string]string{
	"AWS::AccountId": "123456789012",
	"AWS::Partition": "aws",
	"AWS::Region":    "us-east-1",
	"AWS::StackName": "kvmigrate",
	"AWS::URLSuffix": "amazonaws.com",
}

// SampleListParameter is the value a list parameter of a type without a
// default resolves to (comma-separated, as CloudFormation passes it).
var SampleListParameter = map[string]string{
	"List<AWS::EC2::Subnet::Id>":        "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
	"List<AWS::EC2::SecurityGroup::Id>": "sg-0123456789abcdef0",
}

// Load reads and parses a template file.
func Load(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse parses a template. CloudFormation's short-form tags (!Ref,
// !GetAtt, !Sub, ...) stay on the YAML nodes.
func Parse(data []byte) (*Template, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("parse template: not a YAML mapping")
	}
	root := doc.Content[0]
	t := &Template{
		Parameters: map[string]Parameter{},
		Mappings:   map[string]map[string]map[string]string{},
		Resources:  map[string]Resource{},
		Outputs:    pairs(Get(root, "Outputs")),
		Globals:    Get(root, "Globals"),
	}
	for name, n := range pairs(Get(root, "Parameters")) {
		p := Parameter{
			Type:           scalar(Get(n, "Type")),
			AllowedPattern: scalar(Get(n, "AllowedPattern")),
			MinValue:       scalar(Get(n, "MinValue")),
			MaxValue:       scalar(Get(n, "MaxValue")),
			MinLength:      scalar(Get(n, "MinLength")),
			MaxLength:      scalar(Get(n, "MaxLength")),
		}
		if d := Get(n, "Default"); d != nil {
			p.Default, p.HasDefault = d.Value, true
		}
		if av := Get(n, "AllowedValues"); av != nil {
			for _, v := range av.Content {
				p.AllowedValues = append(p.AllowedValues, v.Value)
			}
		}
		t.Parameters[name] = p
	}
	for name, m := range pairs(Get(root, "Mappings")) {
		t.Mappings[name] = map[string]map[string]string{}
		for k1, inner := range pairs(m) {
			t.Mappings[name][k1] = map[string]string{}
			for k2, v := range pairs(inner) {
				t.Mappings[name][k1][k2] = v.Value
			}
		}
	}
	for id, n := range pairs(Get(root, "Resources")) {
		t.Resources[id] = Resource{Type: scalar(Get(n, "Type")), Properties: Get(n, "Properties"), Metadata: Get(n, "Metadata")}
	}
	return t, nil
}

// ResourcesOfType returns the logical ids of the resources of a type, sorted.
func (t *Template) ResourcesOfType(typ string) []string {
	var ids []string
	for id, r := range t.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Substitutions returns the DefinitionSubstitutions of a state machine
// resource: placeholder name → the value's YAML (a literal or an intrinsic).
func (t *Template) Substitutions(stateMachine string) (map[string]*yaml.Node, error) {
	r, ok := t.Resources[stateMachine]
	if !ok {
		return nil, fmt.Errorf("no resource %s", stateMachine)
	}
	subs := map[string]*yaml.Node{}
	for k, v := range pairs(Get(r.Properties, "DefinitionSubstitutions")) {
		subs[k] = v
	}
	return subs, nil
}

// ResolveSubstitutions gives every DefinitionSubstitution of a state
// machine a value: overrides first, else the value resolved with Resolve.
func (t *Template) ResolveSubstitutions(stateMachine string, overrides map[string]string) (map[string]string, error) {
	subs, err := t.Substitutions(stateMachine)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var errs []error
	for k, n := range subs {
		if v, ok := overrides[k]; ok {
			out[k] = v
			continue
		}
		v, err := t.Resolve(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("substitution %s: %w", k, err))
			continue
		}
		out[k] = v
	}
	return out, errors.Join(errs...)
}

// Resolve evaluates a value the way a deploy with default parameters would,
// with sample names and ARNs for resources: a literal; Ref of a parameter
// (its default), a pseudo parameter (Pseudo) or a resource (its logical
// id); GetAtt of a resource's Arn (a sample ARN of its type); FindInMap;
// Sub with ${Name} and ${Resource.Arn} references; If as if every
// condition held (the conditional resources deployed); Join of a list or of
// a List parameter (SampleListParameter when it has no default).
func (t *Template) Resolve(n *yaml.Node) (string, error) {
	fn, arg := intrinsic(n)
	switch fn {
	case "If":
		if arg.Kind != yaml.SequenceNode || len(arg.Content) != 3 {
			return "", fmt.Errorf("line %d: If wants [Condition, IfTrue, IfFalse]", n.Line)
		}
		return t.Resolve(arg.Content[1])
	case "Join":
		if arg.Kind != yaml.SequenceNode || len(arg.Content) != 2 {
			return "", fmt.Errorf("line %d: Join wants [Delimiter, List]", n.Line)
		}
		var items []string
		list := arg.Content[1]
		if lf, la := intrinsic(list); lf == "Ref" {
			name := scalar(la)
			v, err := t.ref(name)
			if p, ok := t.Parameters[name]; ok && !p.HasDefault && SampleListParameter[p.Type] != "" {
				v, err = SampleListParameter[p.Type], nil
			}
			if err != nil {
				return "", err
			}
			items = strings.Split(v, ",")
		} else if list.Kind == yaml.SequenceNode {
			for _, c := range list.Content {
				v, err := t.Resolve(c)
				if err != nil {
					return "", err
				}
				items = append(items, v)
			}
		} else {
			return "", fmt.Errorf("line %d: Join of a %s", n.Line, kindName(list.Kind))
		}
		return strings.Join(items, arg.Content[0].Value), nil
	case "":
		if n.Kind != yaml.ScalarNode {
			return "", fmt.Errorf("line %d: cannot resolve a %s", n.Line, kindName(n.Kind))
		}
		return n.Value, nil
	case "Ref":
		return t.ref(scalar(arg))
	case "GetAtt":
		var parts []string
		if arg.Kind == yaml.SequenceNode {
			for _, c := range arg.Content {
				parts = append(parts, c.Value)
			}
		} else {
			parts = strings.SplitN(arg.Value, ".", 2)
		}
		if len(parts) != 2 {
			return "", fmt.Errorf("line %d: GetAtt wants Resource.Attribute", n.Line)
		}
		return t.getAtt(parts[0], parts[1])
	case "FindInMap":
		if arg.Kind != yaml.SequenceNode || len(arg.Content) != 3 {
			return "", fmt.Errorf("line %d: FindInMap wants [Map, Key, Key]", n.Line)
		}
		var keys [3]string
		for i, c := range arg.Content {
			v, err := t.Resolve(c)
			if err != nil {
				return "", err
			}
			keys[i] = v
		}
		v, ok := t.Mappings[keys[0]][keys[1]][keys[2]]
		if !ok {
			return "", fmt.Errorf("line %d: mapping %s has no %s.%s", n.Line, keys[0], keys[1], keys[2])
		}
		return v, nil
	case "Sub":
		if arg.Kind != yaml.ScalarNode {
			return "", fmt.Errorf("line %d: only the one-string form of Sub is supported", n.Line)
		}
		var err error
		out := subRef.ReplaceAllStringFunc(arg.Value, func(m string) string {
			name := m[2 : len(m)-1]
			var v string
			var e error
			if id, attr, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, "AWS::") {
				v, e = t.getAtt(id, attr)
			} else {
				v, e = t.ref(name)
			}
			if e != nil {
				err = errors.Join(err, e)
			}
			return v
		})
		return out, err
	}
	return "", fmt.Errorf("line %d: cannot resolve Fn::%s", n.Line, fn)
}

var subRef = regexp.MustCompile(`\$\{[A-Za-z0-9_:.]+\}`)

func (t *Template) ref(name string) (string, error) {
	if v, ok := Pseudo[name]; ok {
		return v, nil
	}
	if p, ok := t.Parameters[name]; ok {
		if !p.HasDefault {
			return "", fmt.Errorf("parameter %s has no default", name)
		}
		return p.Default, nil
	}
	if _, ok := t.Resources[name]; ok {
		return name, nil
	}
	return "", fmt.Errorf("Ref %s: no such parameter or resource", name)
}

// SampleARN returns the ARN a resource of a type would have in the sample
// account and region.
func SampleARN(typ, id string) (string, bool) {
	prefix := "arn:" + Pseudo["AWS::Partition"] + ":"
	region, account := Pseudo["AWS::Region"], Pseudo["AWS::AccountId"]
	switch typ {
	case "AWS::Serverless::Function", "AWS::Lambda::Function":
		return prefix + "lambda:" + region + ":" + account + ":function:" + id, true
	case "AWS::DynamoDB::Table":
		return prefix + "dynamodb:" + region + ":" + account + ":table/" + id, true
	case "AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine":
		return prefix + "states:" + region + ":" + account + ":stateMachine:" + id, true
	case "AWS::ECS::Cluster":
		return prefix + "ecs:" + region + ":" + account + ":cluster/" + id, true
	case "AWS::ECS::TaskDefinition":
		return prefix + "ecs:" + region + ":" + account + ":task-definition/" + id + ":1", true
	case "AWS::IAM::Role":
		return prefix + "iam::" + account + ":role/" + id, true
	case "AWS::Logs::LogGroup":
		return prefix + "logs:" + region + ":" + account + ":log-group:" + id + ":*", true
	}
	return "", false
}

func (t *Template) getAtt(id, attr string) (string, error) {
	r, ok := t.Resources[id]
	if !ok {
		return "", fmt.Errorf("GetAtt %s.%s: no such resource", id, attr)
	}
	if attr == "Arn" {
		if arn, ok := SampleARN(r.Type, id); ok {
			return arn, nil
		}
	}
	if attr == "Name" {
		return id, nil
	}
	return "", fmt.Errorf("GetAtt %s.%s: no sample value for %s", id, attr, r.Type)
}

// intrinsic returns the function name (without "Fn::") and the argument of
// an intrinsic in short (!Ref x) or long ({Ref: x}, {Fn::GetAtt: [..]})
// form, or "" for a plain value.
func intrinsic(n *yaml.Node) (string, *yaml.Node) {
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return n.Tag[1:], n
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
		k := n.Content[0].Value
		if k == "Ref" || strings.HasPrefix(k, "Fn::") {
			return strings.TrimPrefix(k, "Fn::"), n.Content[1]
		}
	}
	return "", nil
}

// Intrinsic reports the intrinsic function of a node ("Ref", "GetAtt",
// "Sub", ...) and its argument; "" for a plain value.
func Intrinsic(n *yaml.Node) (fn string, arg *yaml.Node) { return intrinsic(n) }

// Get returns the value of key in a mapping node (nil if n is nil, not a
// mapping, or has no such key). Several keys walk down nested mappings.
func Get(n *yaml.Node, keys ...string) *yaml.Node {
	for _, key := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
				break
			}
		}
		n = next
	}
	return n
}

// pairs returns a mapping node's entries (none for nil or a non-mapping).
func pairs(n *yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n == nil || n.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		out[n.Content[i].Value] = n.Content[i+1]
	}
	return out
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "sequence"
	}
	return "node"
}

// placeholder matches a DefinitionSubstitutions reference.
var placeholder = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// Placeholders returns the ${...} names a definition uses, sorted, once each.
func Placeholders(definition []byte) []string {
	var names []string
	for _, m := range placeholder.FindAllSubmatch(definition, -1) {
		names = append(names, string(m[1]))
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Render replaces every ${Name} of a definition with values[Name], as
// CloudFormation does with DefinitionSubstitutions, and checks that the
// result is JSON. A placeholder without a value is an error.
func Render(definition []byte, values map[string]string) ([]byte, error) {
	var missing []string
	out := placeholder.ReplaceAllFunc(definition, func(m []byte) []byte {
		name := string(m[2 : len(m)-1])
		v, ok := values[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("render definition: no value for %s", strings.Join(slices.Compact(missing), ", "))
	}
	if !json.Valid(out) {
		var v any
		err := json.Unmarshal(out, &v)
		return nil, fmt.Errorf("render definition: the result is not JSON: %w", err)
	}
	return out, nil
}

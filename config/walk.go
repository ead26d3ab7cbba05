package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// walker checks a YAML tree against the yaml tags of the configuration
// types before anything is decoded, so that every unknown key and every
// value of the wrong kind is reported with its key path and line, in YAML
// terms rather than Go's, and none hides the others.
type walker struct {
	root     reflect.Type
	problems []Problem
	// lines maps each key path present in the file to its line, so that
	// problems found later (by Validate) can point at the line too.
	lines map[string]int
}

var durationType = reflect.TypeOf(time.Duration(0))

func (w *walker) add(key string, line int, format string, args ...any) {
	w.problems = append(w.problems, Problem{Key: key, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// walk checks n, found at key (a dotted path; "" for the root), against t.
func (w *walker) walk(n *yaml.Node, t reflect.Type, key string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value keeps the default
	}
	switch {
	case t.Kind() == reflect.Struct:
		w.walkStruct(n, t, key)
	case t.Kind() == reflect.Map:
		w.walkMap(n, t, key)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			example := "a, b"
			if n.Kind == yaml.ScalarNode {
				example = n.Value
			}
			w.add(key, n.Line, "expected a list, e.g. [%s]", example)
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", key, i))
		}
	case t.Kind() == reflect.Pointer:
		w.walk(n, t.Elem(), key)
	default:
		w.walkScalar(n, t, key)
	}
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, key string) {
	if n.Kind != yaml.MappingNode {
		w.add(key, n.Line, "expected the keys of a section (%s), not %s", strings.Join(fieldNames(t), ", "), describe(n))
		return
	}
	fields := structFields(t)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			w.walkMerge(v, t, key)
			continue
		}
		name := k.Value
		path := join(key, name)
		if k.Kind != yaml.ScalarNode {
			w.add(key, k.Line, "a key must be a plain name, not %s", describe(k))
			continue
		}
		if first, dup := seen[name]; dup {
			w.add(path, k.Line, "given twice (lines %d and %d); keep one", first, k.Line)
			continue
		}
		seen[name] = k.Line
		f, ok := fields[name]
		if !ok {
			w.add(path, k.Line, "unknown key%s", w.suggest(name, t, key))
			continue
		}
		w.lines[path] = k.Line
		w.walk(v, f.Type, path)
	}
}

// walkMerge checks the mappings merged in with "<<: *anchor".
func (w *walker) walkMerge(v *yaml.Node, t reflect.Type, key string) {
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			w.walk(item, t, key)
		}
		return
	}
	w.walk(v, t, key)
}

func (w *walker) walkMap(n *yaml.Node, t reflect.Type, key string) {
	if n.Kind != yaml.MappingNode {
		w.add(key, n.Line, "expected a map of keys to values, not %s", describe(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := join(key, k.Value)
		w.lines[path] = k.Line
		w.walkScalar(k, t.Key(), path)
		w.walk(v, t.Elem(), path)
	}
}

// walkScalar decodes n into a fresh value of type t the way the final
// decode will, and explains a failure in YAML terms.
func (w *walker) walkScalar(n *yaml.Node, t reflect.Type, key string) {
	if n.Kind != yaml.ScalarNode {
		w.add(key, n.Line, "expected a single value, not %s", describe(n))
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err == nil {
		return
	}
	v := n.Value
	switch {
	case t == durationType:
		if tag := n.ShortTag(); tag == "!!int" || tag == "!!float" {
			w.add(key, n.Line, "%s is not a duration; write %ss", v, v)
		} else {
			w.add(key, n.Line, "%q is not a duration; write it like 500ms, 10s, 5m or 1h", v)
		}
	case t.Kind() == reflect.Bool:
		w.add(key, n.Line, "%q is not true or false", v)
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		bits := t.Bits()
		if bits == 64 {
			w.add(key, n.Line, "%s is not a whole number", quoteUnlessNumber(n))
		} else {
			w.add(key, n.Line, "%s is not a whole number from %d to %d", quoteUnlessNumber(n), int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
		}
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		w.add(key, n.Line, "%s is not a whole number from 0 to %d", quoteUnlessNumber(n), uint64(math.MaxUint64)>>(64-t.Bits()))
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		w.add(key, n.Line, "%s is not a number", quoteUnlessNumber(n))
	default:
		w.add(key, n.Line, "%q cannot be used here", v)
	}
}

// quoteUnlessNumber shows a number as written and anything else quoted.
func quoteUnlessNumber(n *yaml.Node) string {
	if tag := n.ShortTag(); tag == "!!int" || tag == "!!float" {
		return n.Value
	}
	return strconv.Quote(n.Value)
}

// suggest returns " (did you mean x?)" for a key close to one of the
// section's keys or equal to a key of another section, or else lists the
// section's keys.
func (w *walker) suggest(name string, t reflect.Type, key string) string {
	names := fieldNames(t)
	best, bestDist := "", 3
	for _, candidate := range names {
		if d := editDistance(normalizeKey(name), normalizeKey(candidate)); d < bestDist {
			best, bestDist = candidate, d
		}
	}
	if best != "" {
		return " (did you mean " + best + "?)"
	}
	if elsewhere := findKey(w.root, "", name); len(elsewhere) > 0 {
		return " (did you mean " + strings.Join(elsewhere, " or ") + "?)"
	}
	where := "the sections are"
	if key != "" {
		where = "the keys of " + key + " are"
	}
	return "; " + where + ": " + strings.Join(names, ", ")
}

// findKey returns the full paths of every key named name in t.
func findKey(t reflect.Type, prefix, name string) []string {
	var out []string
	for _, f := range sortedFields(t) {
		path := join(prefix, f.name)
		if f.name == name {
			out = append(out, path)
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, findKey(ft, path, name)...)
		}
	}
	return out
}

// normalizeKey folds case and the separators users mix up.
func normalizeKey(s string) string {
	return strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(s))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// field is a struct field reachable by a YAML key.
type field struct {
	reflect.StructField
	name string
}

// structFields maps each YAML key of t to its field, following yaml.v3's
// rules: the tag's name, else the lower-cased field name; "-" skips a
// field; ",inline" lifts the keys of an embedded struct.
func structFields(t reflect.Type) map[string]field {
	out := map[string]field{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
			for k, v := range structFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = field{StructField: f, name: name}
	}
	return out
}

func sortedFields(t reflect.Type) []field {
	m := structFields(t)
	out := make([]field, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index[0] < out[j].Index[0] })
	return out
}

// fieldNames lists t's keys in declaration order.
func fieldNames(t reflect.Type) []string {
	var names []string
	for _, f := range sortedFields(t) {
		names = append(names, f.name)
	}
	return names
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

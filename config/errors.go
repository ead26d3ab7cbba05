package config

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Key is the dotted key path the problem is about, for example
	// listeners.mqtt.address. Empty when the problem is about no key (YAML
	// syntax).
	Key string
	// Line is the 1-based line of Key in the file. Zero when the key is not
	// in the file (its value is a default) or there is no file.
	Line int
	// Msg says what is wrong, and what to write instead when that is known,
	// without the key.
	Msg string
	// Err is the underlying error, when there is one.
	Err error
}

// String returns "key: msg", or msg alone when there is no key.
func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// Error lists every problem found in a configuration, in the order of the
// file; problems about keys the file does not set come last.
type Error struct {
	// File is the path of the configuration file; empty when the
	// configuration did not come from a file.
	File string
	// Problems is never empty.
	Problems []Problem
}

// Error returns one line per problem: "file:line: key: msg" (or
// "line N: key: msg" without a file, "file: key: msg" without a line).
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case e.File != "" && p.Line > 0:
			fmt.Fprintf(&b, "%s:%d: ", e.File, p.Line)
		case e.File != "":
			b.WriteString(e.File + ": ")
		case p.Line > 0:
			fmt.Fprintf(&b, "line %d: ", p.Line)
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap returns the underlying errors, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var errs []error
	for _, p := range e.Problems {
		if p.Err != nil {
			errs = append(errs, p.Err)
		}
	}
	return errs
}

// keyPrefix matches the key path that starts a validation message.
var keyPrefix = regexp.MustCompile(`^([a-z0-9_]+(?:\.[a-z0-9_]+|\[\d+\])*): `)

// problemsOf turns the errors of Validate into problems, one per line of
// message, each with the line of its key when the file has it.
func problemsOf(err error, lines map[string]int) []Problem {
	var out []Problem
	for _, leaf := range leaves(err) {
		for _, msg := range strings.Split(leaf.Error(), "\n") {
			p := Problem{Msg: msg, Err: leaf}
			if m := keyPrefix.FindStringSubmatch(msg); m != nil {
				p.Key, p.Msg = m[1], msg[len(m[0]):]
				p.Line = lineOf(p.Key, lines)
			}
			out = append(out, p)
		}
	}
	return out
}

// lineOf returns the line of key, or of its nearest parent in the file.
func lineOf(key string, lines map[string]int) int {
	for k := key; k != ""; {
		if l, ok := lines[k]; ok {
			return l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// leaves flattens errors.Join trees (nested or not) into their members.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok && isJoin(err, j.Unwrap()) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// isJoin tells an errors.Join value (whose message is its members' joined
// by newlines) from other multi-errors that format their members
// themselves.
func isJoin(err error, members []error) bool {
	msgs := make([]string, 0, len(members))
	for _, m := range members {
		if m != nil {
			msgs = append(msgs, m.Error())
		}
	}
	return err.Error() == strings.Join(msgs, "\n")
}

// newError sorts problems by line (keys absent from the file last) and
// returns them as an *Error, or nil when there are none.
func newError(file string, problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	sort.SliceStable(problems, func(i, j int) bool {
		li, lj := problems[i].Line, problems[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
	return &Error{File: file, Problems: problems}
}

package auth

import (
	"fmt"
	"strings"
)

// LineError is a problem on one line of a password or ACL file. Line is
// 1-based.
type LineError struct {
	Line int
	Err  error
}

// Error returns "line N: reason".
func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns the underlying reason.
func (e *LineError) Unwrap() error { return e.Err }

// ParseError lists every malformed line found while parsing a file. File is
// the path when known.
type ParseError struct {
	File  string
	Lines []*LineError
}

// Error returns one "file: line N: reason" entry per malformed line,
// separated by newlines.
func (e *ParseError) Error() string {
	var b strings.Builder
	for i, le := range e.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			b.WriteString(": ")
		}
		b.WriteString(le.Error())
	}
	return b.String()
}

// Unwrap returns the individual line errors, so errors.As can find a
// *LineError.
func (e *ParseError) Unwrap() []error {
	errs := make([]error, len(e.Lines))
	for i, le := range e.Lines {
		errs[i] = le
	}
	return errs
}

func (e *ParseError) add(line int, format string, args ...any) {
	e.Lines = append(e.Lines, &LineError{Line: line, Err: fmt.Errorf(format, args...)})
}

func (e *ParseError) orNil() error {
	if len(e.Lines) == 0 {
		return nil
	}
	return e
}

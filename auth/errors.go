package auth

import (
	"errors"
	"fmt"
	"io/fs"
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

// ErrOwnerNotKept is matched (errors.Is) by the error of a save that could
// not give the new file the owner and group of the file it replaces.
var ErrOwnerNotKept = errors.New("owner of the file cannot be kept")

// OwnerError says that a rewritten file could not be given the owner and
// group of the file it replaces. It matches [ErrOwnerNotKept].
type OwnerError struct {
	// UID and GID are the owner and group of the existing file.
	UID, GID int
	// AsUID is the user the process runs as.
	AsUID int
	// Err is the chown error.
	Err error
}

// Error explains what would go wrong and what to do.
func (e *OwnerError) Error() string {
	reason := e.Err
	var pe *fs.PathError
	if errors.As(reason, &pe) {
		reason = pe.Err
	}
	return fmt.Sprintf("it belongs to uid %d, group %d, and running as uid %d sockmq cannot give the rewritten file that owner back (chown: %v); "+
		"whatever reads it as uid %d could lose access. Run this as root (sudo) or as uid %d. File unchanged",
		e.UID, e.GID, e.AsUID, reason, e.UID, e.UID)
}

// Unwrap returns the chown error.
func (e *OwnerError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrOwnerNotKept) true.
func (e *OwnerError) Is(target error) bool { return target == ErrOwnerNotKept }

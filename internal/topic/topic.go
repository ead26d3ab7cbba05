package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic name or filter MQTT can carry (a UTF-8
// string's two-byte length).
const MaxLen = 65535

// Errors returned by ValidName and ValidFilter (wrapped with details).
var (
	ErrInvalidName   = errors.New("invalid topic")
	ErrInvalidFilter = errors.New("invalid topic filter")
)

// NextLevel splits s at its first '/'. more reports whether a '/' was
// found, that is whether another level follows.
func NextLevel(s string) (level, rest string, more bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// ValidName checks that t can be published to: non-empty, at most MaxLen
// bytes, valid UTF-8, no NUL, no wildcard characters [MQTT-3.3.2-2].
func ValidName(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(t) > MaxLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidName, MaxLen)
	case !utf8.ValidString(t):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	case strings.IndexByte(t, 0) >= 0:
		return fmt.Errorf("%w: contains NUL", ErrInvalidName)
	case strings.ContainsAny(t, "+#"):
		return fmt.Errorf("%w: %q contains a wildcard (+ or #)", ErrInvalidName, t)
	}
	return nil
}

// ValidFilter checks that f is a valid topic filter: non-empty, at most
// MaxLen bytes, valid UTF-8 without NUL, '+' only as a whole level and '#'
// only as the whole last level. A shared subscription ($share/group/f) is
// valid when its group and inner filter are.
func ValidFilter(f string) error {
	if g, inner, ok := SplitShared(f); ok {
		if g == "" || strings.ContainsAny(g, "+#") {
			return fmt.Errorf("%w: %q: the share name must be non-empty and without wildcards", ErrInvalidFilter, f)
		}
		if inner == "" {
			return fmt.Errorf("%w: %q: a shared subscription needs a filter after the share name", ErrInvalidFilter, f)
		}
		f = inner
	} else if f == SharePrefix[:len(SharePrefix)-1] || strings.HasPrefix(f, SharePrefix) {
		return fmt.Errorf("%w: %q: a shared subscription is $share/<name>/<filter>", ErrInvalidFilter, f)
	}
	switch {
	case f == "":
		return fmt.Errorf("%w: empty", ErrInvalidFilter)
	case len(f) > MaxLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidFilter, MaxLen)
	case !utf8.ValidString(f):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidFilter)
	case strings.IndexByte(f, 0) >= 0:
		return fmt.Errorf("%w: contains NUL", ErrInvalidFilter)
	}
	for rest := f; ; {
		l, r, more := NextLevel(rest)
		if l != "+" && l != "#" && strings.ContainsAny(l, "+#") {
			return fmt.Errorf("%w: %q: a wildcard must be a whole level", ErrInvalidFilter, f)
		}
		if l == "#" && more {
			return fmt.Errorf("%w: %q: # must be the last level", ErrInvalidFilter, f)
		}
		if !more {
			return nil
		}
		rest = r
	}
}

// IsFilter reports whether s contains wildcards or is a shared
// subscription, that is whether it can only be a filter, never a topic
// name.
func IsFilter(s string) bool {
	return strings.ContainsAny(s, "+#") || strings.HasPrefix(s, SharePrefix)
}

// WildcardFirst reports whether filter f starts with a wildcard level, so
// that it never matches topics starting with '$' [MQTT-4.7.2-1].
func WildcardFirst(f string) bool { return f != "" && (f[0] == '+' || f[0] == '#') }

func dollarFirst(f string) bool { return f != "" && f[0] == '$' }

// Match reports whether topic name t matches filter f: '+' matches
// exactly one level (which may be empty), '#' matches the parent level and
// any number of levels below it, and a filter whose first level is a
// wildcard never matches a topic starting with '$'. f is assumed valid and
// not shared. It does not allocate.
func Match(f, t string) bool {
	if t == "" || f == "" {
		return false
	}
	if t[0] == '$' && WildcardFirst(f) {
		return false
	}
	for {
		fl, frest, fmore := NextLevel(f)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := NextLevel(t)
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore:
			return !tmore
		case !tmore:
			return frest == "#" // "a/#" matches "a"
		}
		f, t = frest, trest
	}
}

// Intersects reports whether at least one topic name matches both filters
// a and b. Both are assumed valid and not shared.
func Intersects(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if (WildcardFirst(a) && dollarFirst(b)) || (WildcardFirst(b) && dollarFirst(a)) {
		return false
	}
	if (a == "+" && b == "/#") || (a == "/#" && b == "+") {
		return false // the only common topic would be the empty, invalid topic ""
	}
	for {
		al, arest, amore := NextLevel(a)
		bl, brest, bmore := NextLevel(b)
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			return brest == "#"
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}

// Covers reports whether every topic name matched by filter f is also
// matched by filter r. Both are assumed valid and not shared.
func Covers(r, f string) bool {
	if r == "" || f == "" {
		return false
	}
	if WildcardFirst(r) && dollarFirst(f) {
		return false
	}
	fFirstEmpty := f[0] == '/'
	for depth := 0; ; depth++ {
		rl, rrest, rmore := NextLevel(r)
		fl, frest, fmore := NextLevel(f)
		if rl == "#" {
			return true
		}
		if fl == "#" {
			// f matches the parent topic (depth levels) and every deeper
			// one. "+/#" covers the deeper ones; it misses the parent,
			// which matters unless the parent is no valid topic: no
			// levels at all, or the empty topic "".
			return rl == "+" && rmore && rrest == "#" && (depth == 0 || (depth == 1 && fFirstEmpty))
		}
		if rl != "+" && (fl == "+" || fl != rl) {
			return false
		}
		switch {
		case !rmore && !fmore:
			return true
		case !fmore:
			return rrest == "#"
		case !rmore:
			return false
		}
		r, f = rrest, frest
	}
}

// SharePrefix starts a shared subscription filter: $share/<name>/<filter>.
const SharePrefix = "$share/"

// SplitShared splits a shared subscription filter into its share name and
// inner filter; ok is false when f is not of the form $share/<name>/...
func SplitShared(f string) (group, filter string, ok bool) {
	rest, found := strings.CutPrefix(f, SharePrefix)
	if !found {
		return "", "", false
	}
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// CoversUnder reports whether filter f matches topic name p and every
// topic below it (p/...). It does not allocate.
func CoversUnder(f, p string) bool { return under(f, p, true) }

// IntersectsUnder reports whether filter f matches topic name p or at least
// one topic below it. It does not allocate.
func IntersectsUnder(f, p string) bool { return under(f, p, false) }

// under walks f against the levels of p: with all, f must match every
// topic below p; otherwise one is enough.
func under(f, p string, all bool) bool {
	if WildcardFirst(f) && strings.HasPrefix(p, "$") {
		return false
	}
	for {
		fl, frest, fmore := NextLevel(f)
		if fl == "#" {
			return true
		}
		pl, prest, pmore := NextLevel(p)
		if fl != "+" && fl != pl {
			return false
		}
		if !pmore {
			if all {
				return fmore && frest == "#" // "p/#" also matches p itself
			}
			return true // p itself, or p followed by f's remaining levels
		}
		if !fmore {
			return false
		}
		f, p = frest, prest
	}
}

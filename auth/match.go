package auth

import (
	"strings"
	"unicode/utf8"
)

// nextLevel splits s at its first '/'. more reports whether a '/' was found,
// that is whether another level follows.
func nextLevel(s string) (level, rest string, more bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// ValidFilter reports whether f is a valid MQTT topic filter: non-empty,
// valid UTF-8 without NUL, '+' only as a whole level and '#' only as the
// whole last level.
func ValidFilter(f string) bool {
	if f == "" || !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
		return false
	}
	for {
		l, rest, more := nextLevel(f)
		if l != "+" && l != "#" && strings.ContainsAny(l, "+#") {
			return false
		}
		if l == "#" && more {
			return false
		}
		if !more {
			return true
		}
		f = rest
	}
}

// ValidTopic reports whether t is a valid MQTT topic name: non-empty, valid
// UTF-8 without NUL, and without wildcard characters.
func ValidTopic(t string) bool {
	return t != "" && utf8.ValidString(t) && !strings.ContainsAny(t, "+#\x00")
}

// wildFirst reports whether filter f starts with a wildcard level.
func wildFirst(f string) bool { return f != "" && (f[0] == '+' || f[0] == '#') }

// dollarFirst reports whether filter f's first level is a literal starting
// with '$', so that f matches only '$' topics.
func dollarFirst(f string) bool { return f != "" && f[0] == '$' }

// MatchTopic reports whether topic name t matches filter f under MQTT 3.1.1
// and 5.0 rules: '+' matches exactly one level (which may be empty), '#'
// matches the parent level and any number of levels below it, and a filter
// whose first level is a wildcard never matches a topic starting with '$'.
// It does not allocate. f is assumed valid (see [ValidFilter]).
func MatchTopic(f, t string) bool { return matchSubst(f, t, "", "", false) }

// matchSubst is MatchTopic where, if subst is set, "%u" and "%c" in f's
// levels stand for user and cid. Callers ensure user and cid contain no '+',
// '#' or '/'.
func matchSubst(f, t, user, cid string, subst bool) bool {
	if t == "" || f == "" {
		return false
	}
	if t[0] == '$' && wildFirst(f) {
		return false
	}
	for {
		fl, frest, fmore := nextLevel(f)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := nextLevel(t)
		if fl != "+" {
			if subst {
				if !levelEqSubst(fl, tl, user, cid) {
					return false
				}
			} else if fl != tl {
				return false
			}
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

// levelEqSubst reports whether pattern level p, with "%u" and "%c" replaced
// by user and cid, equals l. It does not allocate.
func levelEqSubst(p, l, user, cid string) bool {
	for p != "" {
		if len(p) >= 2 && p[0] == '%' && (p[1] == 'u' || p[1] == 'c') {
			v := user
			if p[1] == 'c' {
				v = cid
			}
			if !strings.HasPrefix(l, v) {
				return false
			}
			l, p = l[len(v):], p[2:]
			continue
		}
		if l == "" || l[0] != p[0] {
			return false
		}
		l, p = l[1:], p[1:]
	}
	return l == ""
}

// Intersects reports whether at least one topic name matches both filters a
// and b. Both are assumed valid.
func Intersects(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if (wildFirst(a) && dollarFirst(b)) || (wildFirst(b) && dollarFirst(a)) {
		return false
	}
	if (a == "+" && b == "/#") || (a == "/#" && b == "+") {
		return false // the only common topic would be the empty, invalid topic ""
	}
	for {
		al, arest, amore := nextLevel(a)
		bl, brest, bmore := nextLevel(b)
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
// matched by filter r. Both are assumed valid.
func Covers(r, f string) bool {
	if r == "" || f == "" {
		return false
	}
	if wildFirst(r) && dollarFirst(f) {
		return false
	}
	fFirstEmpty := f[0] == '/'
	for depth := 0; ; depth++ {
		rl, rrest, rmore := nextLevel(r)
		fl, frest, fmore := nextLevel(f)
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

// substitute returns pattern p with "%u" and "%c" replaced.
func substitute(p, user, cid string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	return strings.NewReplacer("%u", user, "%c", cid).Replace(p)
}

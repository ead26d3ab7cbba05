package origin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Any is the list entry that allows every origin.
const Any = "*"

// Policy is an allowed-origins list with its same-origin rule.
type Policy struct {
	any     bool
	allowed map[string]bool // normalized origins
}

// Parse builds the policy for an allowed-origins list: each entry is "*"
// or an origin, scheme://host[:port] (no path). An empty list allows the
// same origin only. Every bad entry is reported, joined into one error.
func Parse(list []string) (*Policy, error) {
	return parse("", list)
}

// Validate reports every bad entry of list, each error starting with key
// (the configuration key the list comes from).
func Validate(key string, list []string) error {
	_, err := parse(key+": ", list)
	return err
}

func parse(prefix string, list []string) (*Policy, error) {
	p := &Policy{allowed: make(map[string]bool, len(list))}
	var errs []error
	for _, o := range list {
		if o == Any {
			p.any = true
			continue
		}
		n, ok := normalize(o)
		if !ok {
			errs = append(errs, fmt.Errorf("%s%q must be %q or an origin such as https://app.example.com (scheme://host[:port], no path)", prefix, o, Any))
			continue
		}
		p.allowed[n] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// Allowed reports whether r may be upgraded: it has no Origin header, or
// its Origin is the request's own origin, or is listed (or "*" is).
func (p *Policy) Allowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || p.any {
		return true
	}
	n, ok := normalize(o)
	if !ok {
		return false // "null" (sandboxed and file:// pages) and garbage
	}
	return n == Self(r) || p.allowed[n]
}

// Self returns the request's own origin, normalized: http or https (by
// whether the connection is TLS) and the Host header. Behind a proxy that
// terminates TLS or rewrites Host, list the public origin instead.
func Self(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	n, _ := normalize(scheme + "://" + r.Host)
	return n
}

// normalize returns origin as scheme://host[:port] in lower case without
// the scheme's default port, or false if it is not an origin.
func normalize(origin string) (string, bool) {
	u, err := url.Parse(strings.TrimSuffix(origin, "/"))
	if err != nil || u.Scheme == "" || u.Hostname() == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", false
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, true
}

package control

import (
	"encoding/base64"
	"strings"
)

// Key layout. Client ids, node names and token ids are base64url-encoded
// (no padding), whose alphabet is a subset of what KV keys allow, so no id
// can add a token or act as a wildcard.
//
//	owners:  c.<id>                 ownership record, revision = epoch
//	nodes:   n.<node>               heartbeat (bucket TTL)
//	         r.<node>               reaper election for a dead node
//	wills:   <node>.<id>            pending will of a client on node
//	presence:<node>.<id>            presence document of a session on node
//	revoked: t.<jti>                revoked bridge token

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func dec(s string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return string(b), err == nil
}

func ownerKey(id string) string                { return "c." + enc(id) }
func nodeKey(node string) string               { return "n." + enc(node) }
func reaperKey(node string) string             { return "r." + enc(node) }
func nodeScoped(node, id string) string        { return enc(node) + "." + enc(id) }
func nodeFilter(node string) string            { return enc(node) + ".*" }
func revokedKey(jti string) string             { return "t." + enc(jti) }
func clientOfOwnerKey(k string) (string, bool) { return decPrefixed(k, "c.") }

func decPrefixed(k, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(k, prefix)
	if !ok {
		return "", false
	}
	return dec(rest)
}

// splitScoped decodes a <node>.<id> key.
func splitScoped(k string) (node, id string, ok bool) {
	a, b, found := strings.Cut(k, ".")
	if !found {
		return "", "", false
	}
	node, ok1 := dec(a)
	id, ok2 := dec(b)
	return node, id, ok1 && ok2
}

// bucketName makes a bucket name from the cluster name (bucket names allow
// letters, digits, '-' and '_').
func bucketName(cluster, what string) string {
	var b strings.Builder
	b.WriteString("sockmq_")
	for _, r := range cluster {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	b.WriteString("_" + what)
	return b.String()
}

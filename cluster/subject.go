package cluster

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// Subjects: every message subject is
//
//	sk.<cluster>.<class>.<ns>.<level>.<level>...
//
// where class is "c" (core NATS, at most once) or "j" (also stored in the
// cluster's JetStream stream before the publisher is acknowledged), and ns
// is "t" for ordinary topics and "s" for topics whose first level starts
// with '$', so that filters with a leading wildcard (mapped under "t")
// never match them [MQTT-4.7.2-1]. Each MQTT level is one NATS token,
// escaped so that the mapping is reversible: '%', '.', '*', '>', and bytes
// up to ' ' and 0x7f become %XX, and an empty level becomes a bare "%"
// (a literal '%' is always escaped). Filters map '+' to '*' and '#' to
// '>' (and "a/#" also subscribes to "a", which '#' matches in MQTT).

const subjectRoot = "sk"

// maxSubject keeps a subject within NATS' control line (4096 bytes by
// default) with room for the reply subject and sizes.
const maxSubject = 3500

// errSubjectTooLong is returned for topics too long to map.
var errSubjectTooLong = errors.New("topic too long for a NATS subject")

// Message classes.
const (
	classCore = "c"
	classJS   = "j"
)

// escapeLevel appends the token of one MQTT level.
func escapeLevel(b *strings.Builder, l string) {
	if l == "" {
		b.WriteByte('%')
		return
	}
	const hexd = "0123456789ABCDEF"
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c <= ' ' || c == 0x7f || c == '%' || c == '.' || c == '*' || c == '>' {
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
			continue
		}
		b.WriteByte(c)
	}
}

// unescapeLevel reverses escapeLevel.
func unescapeLevel(tok string) (string, error) {
	if tok == "%" {
		return "", nil
	}
	if !strings.Contains(tok, "%") {
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		if tok[i] != '%' {
			out = append(out, tok[i])
			continue
		}
		if i+2 >= len(tok) {
			return "", errors.New("bad escape in subject token " + tok)
		}
		v, err := hex.DecodeString(tok[i+1 : i+3])
		if err != nil {
			return "", errors.New("bad escape in subject token " + tok)
		}
		out = append(out, v[0])
		i += 2
	}
	return string(out), nil
}

// nsOf is the namespace token of a topic or filter.
func nsOf(t string) string {
	if strings.HasPrefix(t, "$") {
		return "s"
	}
	return "t"
}

// topicSubject maps a topic name to its subject in class.
func topicSubject(cluster, class, topic string) (string, error) {
	var b strings.Builder
	b.Grow(len(topic) + len(cluster) + 16)
	b.WriteString(subjectRoot + ".")
	b.WriteString(cluster)
	b.WriteByte('.')
	b.WriteString(class)
	b.WriteByte('.')
	b.WriteString(nsOf(topic))
	for rest := topic; ; {
		l, next, more := strings.Cut(rest, "/")
		b.WriteByte('.')
		escapeLevel(&b, l)
		if !more {
			break
		}
		rest = next
	}
	if b.Len() > maxSubject {
		return "", errSubjectTooLong
	}
	return b.String(), nil
}

// subjectTopic maps a message subject back to its topic.
func subjectTopic(subject string) (string, error) {
	toks := strings.Split(subject, ".")
	if len(toks) < 5 || toks[0] != subjectRoot {
		return "", errors.New("not a sockmq subject: " + subject)
	}
	levels := make([]string, 0, len(toks)-4)
	for _, t := range toks[4:] {
		l, err := unescapeLevel(t)
		if err != nil {
			return "", err
		}
		levels = append(levels, l)
	}
	return strings.Join(levels, "/"), nil
}

// filterSubjects maps a (non-shared) MQTT filter to the subjects that
// receive what it matches, in every class.
func filterSubjects(cluster, filter string) ([]string, error) {
	var b strings.Builder
	b.WriteString(subjectRoot + ".")
	b.WriteString(cluster)
	b.WriteString(".*.")
	b.WriteString(nsOf(filter))
	var parent string
	for rest := filter; ; {
		l, next, more := strings.Cut(rest, "/")
		switch l {
		case "#":
			parent = b.String()
			b.WriteString(".>")
		case "+":
			b.WriteString(".*")
		default:
			b.WriteByte('.')
			escapeLevel(&b, l)
		}
		if !more {
			break
		}
		rest = next
	}
	if b.Len() > maxSubject {
		return nil, errSubjectTooLong
	}
	out := []string{b.String()}
	if parent != "" && filter != "#" {
		out = append(out, parent) // "a/#" matches "a" [MQTT-4.7.1-2]
	}
	return out, nil
}

// queueName is the NATS queue group of the shared subscription
// $share/<group>/<filter>: NATS gives each message to one member.
func queueName(group, filter string) string {
	h := sha256.Sum256([]byte(group + "\x00" + filter))
	return "sh" + hex.EncodeToString(h[:16])
}

// retainedKey is a topic's key in the retained bucket: key-value keys have
// a small alphabet, so the topic is base64url-encoded.
func retainedKey(topic string) (string, error) {
	k := "r." + base64.RawURLEncoding.EncodeToString([]byte(topic))
	if len(k) > maxSubject {
		return "", errSubjectTooLong
	}
	return k, nil
}

// keyTopic reverses retainedKey.
func keyTopic(key string) (string, error) {
	rest, ok := strings.CutPrefix(key, "r.")
	if !ok {
		return "", errors.New("not a retained key: " + key)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Subject is the core NATS subject that carries MQTT topic t (QoS 0) in
// cluster clusterName: what a native NATS client subscribes to in order
// to see those messages (their payload is sockmq's encoded message).
func Subject(clusterName, t string) (string, error) {
	return topicSubject(clusterName, classCore, t)
}

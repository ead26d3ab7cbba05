package main

import (
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// A payload is ASCII text: "m<send time ns>,<publisher>,<sequence>," padded
// with 'x' to the requested size. The leading letter keeps it from being
// valid JSON, so the sockmq bridge hands it to SocketCluster subscribers as
// a JSON string, the same shape socketcluster-server delivers; and text
// survives every hop without escaping.

// appendPayload appends a payload of at least size bytes (more if size is
// too small for the header) to dst.
func appendPayload(dst []byte, sentNs int64, pub, seq, size int) []byte {
	start := len(dst)
	dst = append(dst, 'm')
	dst = strconv.AppendInt(dst, sentNs, 10)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, int64(pub), 10)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, ',')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parsePayload reads the header of a payload. It does not allocate.
func parsePayload(b []byte) (sentNs int64, pub, seq int, ok bool) {
	if len(b) < 7 || b[0] != 'm' {
		return 0, 0, 0, false
	}
	var vals [3]int64
	i := 1
	for f := 0; f < 3; f++ {
		var v int64
		digits := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			v = v*10 + int64(b[i]-'0')
			i++
			digits++
		}
		if digits == 0 || digits > 19 || i >= len(b) || b[i] != ',' {
			return 0, 0, 0, false
		}
		i++
		vals[f] = v
	}
	return vals[0], int(vals[1]), int(vals[2]), true
}

// errNotLoopback refuses targets outside this machine.
var errNotLoopback = errors.New("only loopback targets are allowed (127.0.0.0/8, ::1, localhost)")

// checkLoopbackHost accepts "localhost" and loopback IP literals only; no
// name is resolved, so nothing outside the machine can be reached.
func checkLoopbackHost(host string) error {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return errNotLoopback
}

// checkLoopbackAddr validates a host:port target.
func checkLoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	return checkLoopbackHost(host)
}

// checkLoopbackURL validates a ws:// URL target.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "ws" {
		return errors.New("url scheme must be ws:// (loopback only, no TLS)")
	}
	return checkLoopbackHost(u.Hostname())
}

package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// keyGUID is the GUID of RFC 6455 §1.3 that the accept key hashes with.
const keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// ErrNotWebSocket is wrapped by the errors Upgrade returns for requests
// that are not valid WebSocket upgrades (after it has answered them).
var ErrNotWebSocket = errors.New("ws: not a websocket upgrade")

// UpgradeOptions tune Upgrade.
type UpgradeOptions struct {
	// CheckOrigin decides whether the request's origin may connect. Nil
	// accepts every origin. A refusal is answered with 403.
	CheckOrigin func(r *http.Request) bool
	// WriteTimeout bounds writing the 101 answer. Zero means 10s.
	WriteTimeout time.Duration
}

// Upgrade checks that r is a WebSocket upgrade (GET, Upgrade: websocket,
// Connection: upgrade, version 13, a 16-byte key), hijacks the connection
// from net/http and writes the 101 answer itself, so that nothing of
// net/http's per-connection state stays referenced. Bytes the client sent
// after its request (its first frames, if it did not wait for the answer)
// are returned in early.
//
// When the request is not acceptable Upgrade answers it with the fitting
// status (400, 403, 405, 426 or 500) and returns an error; the caller
// writes nothing more.
func Upgrade(w http.ResponseWriter, r *http.Request, opts UpgradeOptions) (conn net.Conn, early []byte, err error) {
	fail := func(status int, msg string) (net.Conn, []byte, error) {
		if status == http.StatusBadRequest || status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, msg, status)
		return nil, nil, fmt.Errorf("%w: %s", ErrNotWebSocket, msg)
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return fail(http.StatusBadRequest, "websocket: the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header")
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return fail(http.StatusBadRequest, "websocket: the client is not using the websocket protocol: 'websocket' token not found in 'Upgrade' header")
	}
	if r.Method != http.MethodGet {
		return fail(http.StatusMethodNotAllowed, "websocket: the request method is not GET")
	}
	if !headerHasToken(r.Header, "Sec-Websocket-Version", "13") {
		return fail(http.StatusBadRequest, "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header")
	}
	if opts.CheckOrigin != nil && !opts.CheckOrigin(r) {
		return fail(http.StatusForbidden, "websocket: request origin not allowed")
	}
	key := strings.TrimSpace(r.Header.Get("Sec-Websocket-Key"))
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return fail(http.StatusBadRequest, "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header must be Base64 encoded value of 16-byte in length")
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return fail(http.StatusInternalServerError, "websocket: response does not implement http.Hijacker")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return fail(http.StatusInternalServerError, "websocket: hijack: "+err.Error())
	}
	if n := brw.Reader.Buffered(); n > 0 {
		early = make([]byte, n)
		_, _ = brw.Reader.Read(early)
	}
	resp := make([]byte, 0, 160)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = append(resp, AcceptKey(key)...)
	resp = append(resp, "\r\n\r\n"...)
	wt := opts.WriteTimeout
	if wt <= 0 {
		wt = 10 * time.Second
	}
	_ = c.SetDeadline(time.Now().Add(wt))
	if _, err := c.Write(resp); err != nil {
		_ = c.Close()
		return nil, nil, fmt.Errorf("ws: writing the upgrade answer: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, early, nil
}

// AcceptKey returns the Sec-WebSocket-Accept value for a client's key.
func AcceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(keyGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// headerHasToken reports whether a comma-separated header contains token
// (case-insensitively).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

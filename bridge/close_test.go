package bridge_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/internal/scproto"
)

// rawFrameHeader returns the header of a masked client text frame of n
// payload bytes with the all-zero masking key (the payload is sent as is).
func rawFrameHeader(opcode byte, n int) []byte {
	h := []byte{0x80 | opcode, 0x80 | 127}
	h = binary.BigEndian.AppendUint64(h, uint64(n))
	return append(h, 0, 0, 0, 0)
}

// A client that is still sending an oversized frame when the bridge closes
// with 1009 must get the close frame and a clean end of the connection, not
// a TCP reset (which makes browsers and Node report 1006 instead of 1009).
func TestFrameTooBigClosesWithoutReset(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFrameSize = 64 << 10
	st := startStack(t, cfg, nil)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial("ws://"+st.b.HTTPAddr()+"/socketcluster/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetCloseHandler(func(int, string) error { return nil }) // answered by hand below
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := conn.ReadMessage(); err != nil || scproto.Decode(msg).Kind != scproto.KindPackets {
		t.Fatalf("handshake reply %q, %v", msg, err)
	}

	// Announce a frame twice the limit and send one byte more than the limit.
	nc := conn.UnderlyingConn()
	total := 2 * cfg.MaxFrameSize
	first := cfg.MaxFrameSize + 1
	if _, err := nc.Write(append(rawFrameHeader(websocket.TextMessage, total), strings.Repeat("a", first)...)); err != nil {
		t.Fatal(err)
	}
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("read after the oversized frame: %v, want close 1009", err)
	}

	// The client finishes its frame, as a WebSocket client must, then
	// answers the close. The server must still be reading: no reset.
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	rest := []byte(strings.Repeat("a", total-first))
	for len(rest) > 0 {
		n := min(len(rest), 4096)
		if _, err := nc.Write(rest[:n]); err != nil {
			t.Fatalf("the server reset the connection while the client finished its frame: %v", err)
		}
		rest = rest[n:]
	}
	closeMsg := websocket.FormatCloseMessage(websocket.CloseMessageTooBig, "")
	if _, err := nc.Write(append(rawFrameHeaderShort(websocket.CloseMessage, len(closeMsg)), closeMsg...)); err != nil {
		t.Fatalf("the server reset the connection before the client's close frame: %v", err)
	}
	var buf [512]byte
	n, err := nc.Read(buf[:])
	if err != io.EOF {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server did not end the connection within 5s")
		}
		t.Fatalf("after the close handshake: read %d bytes, %v; want a clean end of stream (EOF)", n, err)
	}
}

// rawFrameHeaderShort is rawFrameHeader for payloads under 126 bytes
// (control frames).
func rawFrameHeaderShort(opcode byte, n int) []byte {
	return []byte{0x80 | opcode, 0x80 | byte(n), 0, 0, 0, 0}
}

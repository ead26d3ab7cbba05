package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/internal/scproto"
)

// scConn is a minimal SocketCluster protocol v2 client (what
// socketcluster-client 15+ speaks): #handshake, #subscribe and #publish
// as transmit or invoke; it answers the server's "" ping with "" (and the
// v1 "#1" with "#2").
type scConn struct {
	ws  *websocket.Conn
	wmu sync.Mutex
	cid atomic.Int64

	mu      sync.Mutex
	pending map[int64]chan error
	closed  bool

	onPublish func(data []byte) // the publish data (valid during the call only)
	closing   atomic.Bool       // Close was called: the end is not a drop
	done      chan struct{}
	errOnce   sync.Once
	err       error
}

// scMaxFrame bounds a received frame (a payload of the largest --size
// plus its JSON envelope fits).
const scMaxFrame = 17 << 20

// dialSC opens a socket and completes the handshake. A subscriber
// (onPublish set) reads through a 64 KiB buffer, so that one read takes
// many frames; idle sockets keep 4 KiB.
func dialSC(ctx context.Context, url string, onPublish func([]byte)) (*scConn, error) {
	rbuf := 4096
	if onPublish != nil {
		rbuf = 64 << 10
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: rbuf, WriteBufferSize: 4096}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(scMaxFrame)
	c := &scConn{ws: ws, pending: make(map[int64]chan error), onPublish: onPublish, done: make(chan struct{})}
	go c.readLoop()
	if err := c.invoke("#handshake", []byte(`{"authToken":null}`), 10*time.Second); err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return c, nil
}

func (c *scConn) write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, frame)
}

// call sends an invoke and returns the channel its response arrives on.
func (c *scConn) call(event string, data []byte) (chan error, error) {
	cid := c.cid.Add(1)
	ch := make(chan error, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.failure()
	}
	c.pending[cid] = ch
	c.mu.Unlock()
	if err := c.write(scproto.AppendInvoke(nil, event, data, cid)); err != nil {
		c.mu.Lock()
		delete(c.pending, cid)
		c.mu.Unlock()
		return nil, err
	}
	return ch, nil
}

func (c *scConn) invoke(event string, data []byte, timeout time.Duration) error {
	ch, err := c.call(event, data)
	if err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%s: no response within %v", event, timeout)
	}
}

func (c *scConn) failure() error {
	if c.err != nil {
		return c.err
	}
	return errors.New("socket closed")
}

var (
	publishMarker = []byte(`"data":"m`)
	publishStart  = []byte(`{"event":"#publish"`)
	ridMarker     = []byte(`"rid":`)
)

// fastPublishes is the receive fast path for the tool's own payloads (a
// string starting with 'm' that needs no escaping, see payload.go): a
// frame that is one #publish, or a JSON-array batch of nothing but
// #publish packets (the bridge batches what is pending for a socket), is
// handed over without a JSON decoder. It reports false, having called
// nothing, for any other frame (responses, other events, payloads of
// another shape), which then takes the decoder.
func fastPublishes(msg []byte, onPublish func([]byte)) bool {
	body := msg
	if len(body) > 0 && body[0] == '[' {
		if bytes.Contains(body, ridMarker) {
			return false
		}
		body = body[1:]
	}
	if !bytes.HasPrefix(body, publishStart) {
		return false
	}
	// Split at each packet start; every packet must hold a payload.
	var spans [256][2]int
	n := 0
	for off := 0; off < len(body); {
		next := bytes.Index(body[off+len(publishStart):], publishStart)
		end := len(body)
		if next >= 0 {
			end = off + len(publishStart) + next
		}
		seg := body[off:end]
		i := bytes.LastIndex(seg, publishMarker)
		if i < 0 {
			return false
		}
		rest := seg[i+len(publishMarker)-1:]
		j := bytes.IndexByte(rest, '"')
		if j <= 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
			return false
		}
		if n == len(spans) {
			return false
		}
		start := off + i + len(publishMarker) - 1
		spans[n] = [2]int{start, start + j}
		n++
		off = end
	}
	for _, sp := range spans[:n] {
		onPublish(body[sp[0]:sp[1]])
	}
	return true
}

// readFrame appends the rest of a frame from r to dst[:0], growing dst
// only for a frame larger than any before.
func readFrame(dst []byte, r io.Reader) ([]byte, error) {
	dst = dst[:0]
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// readLoop reads every frame into one reused buffer: nothing received is
// kept after it was handled (onPublish gets a slice of that buffer).
func (c *scConn) readLoop() {
	defer close(c.done)
	msg := make([]byte, 0, 4096)
	for {
		_, r, err := c.ws.NextReader()
		if err == nil {
			msg, err = readFrame(msg, r)
		}
		if err != nil {
			c.fail(err)
			return
		}
		switch {
		case len(msg) == 0: // v2 ping
			_ = c.write(nil)
			continue
		case string(msg) == scproto.PingV1:
			_ = c.write([]byte(scproto.PongV1))
			continue
		}
		if c.onPublish != nil && fastPublishes(msg, c.onPublish) {
			continue
		}
		f := scproto.Decode(msg)
		for _, p := range f.Packets {
			switch {
			case p.HasRID:
				c.resolve(p.RID, p.Error)
			case p.Event == "#publish" && c.onPublish != nil:
				var pd struct {
					Channel string          `json:"channel"`
					Data    json.RawMessage `json:"data"`
				}
				if json.Unmarshal(p.Data, &pd) == nil {
					if strings.ContainsAny(pd.Channel, "+#") {
						// Wildcard channels wrap each message as {topic, data}.
						var env struct {
							Data json.RawMessage `json:"data"`
						}
						_ = json.Unmarshal(pd.Data, &env)
						pd.Data = env.Data
					}
					if s, ok := scproto.DataString(pd.Data); ok {
						c.onPublish([]byte(s))
					} else {
						c.onPublish(pd.Data)
					}
				}
			}
		}
	}
}

func (c *scConn) resolve(rid int64, errJSON json.RawMessage) {
	c.mu.Lock()
	ch, ok := c.pending[rid]
	delete(c.pending, rid)
	c.mu.Unlock()
	if !ok {
		return
	}
	if errJSON != nil {
		ch <- fmt.Errorf("error response: %s", errJSON)
	} else {
		ch <- nil
	}
}

func (c *scConn) fail(err error) {
	c.errOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.closed = true
		for id, ch := range c.pending {
			ch <- err
			delete(c.pending, id)
		}
		c.mu.Unlock()
	})
}

// Close sends a normal close frame and closes the socket.
func (c *scConn) Close() {
	c.closing.Store(true)
	c.mu.Lock()
	wasClosed := c.closed
	c.closed = true
	c.mu.Unlock()
	if !wasClosed {
		c.wmu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.wmu.Unlock()
	}
	_ = c.ws.Close()
	<-c.done
}

// scTransport makes SocketCluster subscribers and publishers; with mqttPub
// set, publishers are MQTT clients of that broker instead.
type scTransport struct {
	url      string
	invoke   bool
	inflight int
	mqttPub  string
	prefix   string
	mqtt     *mqttTransport
}

func (t *scTransport) target() string {
	if t.mqttPub != "" {
		return "mqtt://" + t.mqttPub + " -> " + t.url
	}
	return t.url
}

type scSub struct{ c *scConn }

func (s *scSub) Close() { s.c.Close() }

func (t *scTransport) newSub(ctx context.Context, _ int, _ string, channels []string, onMsg func([]byte)) (subscriber, error) {
	c, err := dialSC(ctx, t.url, onMsg)
	if err != nil {
		return nil, err
	}
	go func() { // count sockets that drop before Close
		<-c.done
		if !c.closing.Load() {
			connLost.Add(1)
		}
	}()
	for _, ch := range channels {
		data, _ := json.Marshal(map[string]string{"channel": ch})
		if err := c.invoke("#subscribe", data, 10*time.Second); err != nil {
			c.Close()
			return nil, fmt.Errorf("subscribe %s: %w", ch, err)
		}
	}
	return &scSub{c: c}, nil
}

// scPub publishes to one channel, as transmits or as invokes (at most
// inflight unanswered).
type scPub struct {
	c       *scConn
	channel string
	invoke  bool
	pending *window[chan error]
}

func waitReply(ch chan error, timeout time.Duration) error {
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		return errors.New("publish not acknowledged in time")
	}
}

func (t *scTransport) newPub(ctx context.Context, i int, channel string) (publisher, error) {
	if t.mqttPub != "" {
		return t.mqtt.newPub(ctx, i, t.prefix+channel)
	}
	c, err := dialSC(ctx, t.url, nil)
	if err != nil {
		return nil, err
	}
	return &scPub{c: c, channel: channel, invoke: t.invoke, pending: newWindow(t.inflight, waitReply)}, nil
}

func (p *scPub) frameData(payload []byte) []byte {
	b := make([]byte, 0, len(payload)+len(p.channel)+32)
	b = append(b, `{"channel":`...)
	b = scproto.AppendString(b, p.channel)
	b = append(b, `,"data":"`...)
	b = append(b, payload...) // payloads are plain ASCII without quotes or escapes
	return append(b, `"}`...)
}

func (p *scPub) Publish(payload []byte) error {
	data := p.frameData(payload)
	if !p.invoke {
		return p.c.write(scproto.AppendEvent(make([]byte, 0, len(data)+32), "#publish", data))
	}
	var err error
	if p.pending.full() {
		err = p.pending.waitOldest(10 * time.Second)
	}
	ch, cerr := p.c.call("#publish", data)
	if cerr != nil {
		return cerr
	}
	p.pending.push(ch)
	return err
}

func (p *scPub) Flush(timeout time.Duration) error { return p.pending.flush(timeout) }

func (p *scPub) Close() { p.c.Close() }

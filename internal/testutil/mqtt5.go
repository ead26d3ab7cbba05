package testutil

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
)

// Client5 is a real MQTT 5 client (paho.golang) that records what it
// receives.
type Client5 struct {
	*paho.Client
	Msgs chan *paho.Publish
	// Disconnected receives the server's DISCONNECT, if any.
	Disconnected chan *paho.Disconnect
	conn         net.Conn
}

// Dial opens a TCP connection to addr.
func Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

// DialWS opens an MQTT-over-WebSocket connection to ws://addr/path.
func DialWS(t testing.TB, addr, path string) net.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	u := url.URL{Scheme: "ws", Host: addr, Path: path}
	ws, resp, err := d.Dial(u.String(), http.Header{})
	if err != nil {
		t.Fatalf("websocket dial %s: %v (response %v)", u.String(), err, resp)
	}
	return &wsClientConn{Conn: ws.UnderlyingConn(), ws: ws}
}

// Connect5 sends CONNECT over conn and returns the client and CONNACK. A
// refused CONNECT returns the CONNACK and a non-nil error.
func Connect5(t testing.TB, conn net.Conn, cp *paho.Connect) (*Client5, *paho.Connack, error) {
	t.Helper()
	c := &Client5{Msgs: make(chan *paho.Publish, 1000), Disconnected: make(chan *paho.Disconnect, 1), conn: conn}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.Msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.Disconnected <- d:
			default:
			}
		},
		OnClientError: func(error) {},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.conn.Close() })
	return c, ca, nil
}

// MustConnect5 connects a clean-start MQTT 5 client with id to the TCP
// address addr.
func MustConnect5(t testing.TB, addr, id string) *Client5 {
	t.Helper()
	c, _, err := Connect5(t, Dial(t, addr), &paho.Connect{ClientID: id, CleanStart: true})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

// Sub subscribes to filter at qos and returns the SUBACK reason codes.
func (c *Client5) Sub(t testing.TB, filter string, qos byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil && sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	c.barrier(t, ctx)
	return sa.Reasons
}

// barrier waits until the broker has finished processing everything this
// client sent: it handles a client's packets in order, and it writes SUBACK
// before it replays retained messages, so without this a message retained
// just after Sub could arrive twice (live, then as the replay).
func (c *Client5) barrier(t testing.TB, ctx context.Context) {
	t.Helper()
	if _, err := c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"testutil/barrier"}}); err != nil {
		t.Fatalf("barrier: %v", err)
	}
}

// Pub publishes payload to topic and waits for the QoS flow to complete.
func (c *Client5) Pub(t testing.TB, topic string, qos byte, retain bool, payload string) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	if err != nil && r == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return r
}

// Next waits for the next received message.
func (c *Client5) Next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.Msgs:
		return m
	case <-time.After(MessageWait):
		t.Fatalf("no message received within %v", MessageWait)
		return nil
	}
}

// Drop closes the network connection without DISCONNECT, as a crashing
// device would.
func (c *Client5) Drop() { _ = c.conn.Close() }

// wsClientConn is the client side of MQTT over WebSocket as a net.Conn.
type wsClientConn struct {
	net.Conn
	ws  *websocket.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *wsClientConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.buf) == 0 {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return 0, err
		}
		c.buf = b
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *wsClientConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsClientConn) Close() error { return c.ws.Close() }

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// ioTimeout bounds every dial, CONNECT round trip and write. A broker that
// does not answer within it counts as down.
const ioTimeout = 10 * time.Second

// conn is one MQTT network connection: a reader owned by whoever calls
// read, and writes serialised by a mutex (the reader answers PUBLISH and
// PUBREL while the owner publishes).
type conn struct {
	version byte
	nc      net.Conn
	br      *bufio.Reader
	wmu     sync.Mutex
	done    chan struct{} // closed by close
	once    sync.Once
}

// dial connects to addr and completes the CONNECT/CONNACK exchange. A
// refused CONNECT is an error. While the connection lives it sends
// PINGREQ often enough for the keepalive (the client's or the server's).
func dial(ctx context.Context, addr string, o connectOptions) (*conn, connack, error) {
	d := net.Dialer{Timeout: ioTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, connack{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &conn{version: o.version, nc: nc, br: bufio.NewReaderSize(nc, 16<<10), done: make(chan struct{})}
	_ = nc.SetDeadline(time.Now().Add(ioTimeout))
	if err := c.write(connectPacket(o)); err != nil {
		c.close()
		return nil, connack{}, fmt.Errorf("send connect: %w", err)
	}
	p, err := readPacket(c.br)
	if err != nil {
		c.close()
		return nil, connack{}, fmt.Errorf("read connack: %w", err)
	}
	if p.typ != typeConnack {
		c.close()
		return nil, connack{}, fmt.Errorf("expected CONNACK, got packet type %d", p.typ)
	}
	ca, err := parseConnack(o.version, p.body)
	if err != nil {
		c.close()
		return nil, connack{}, err
	}
	if ca.code != 0 {
		c.close()
		return nil, ca, fmt.Errorf("connect refused with code 0x%02x", ca.code)
	}
	_ = nc.SetDeadline(time.Time{})
	keepAlive := int(o.keepAlive)
	if ca.serverKeepAlive >= 0 {
		keepAlive = ca.serverKeepAlive
	}
	if keepAlive > 0 {
		go c.ping(time.Duration(keepAlive) * time.Second / 2)
	}
	return c, ca, nil
}

// write sends one whole packet.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.nc.Write(b)
	return err
}

// read returns the next packet; an error ends the connection.
func (c *conn) read() (packet, error) { return readPacket(c.br) }

func (c *conn) ping(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if c.write(pingPacket()) != nil {
				return
			}
		}
	}
}

// disconnect sends DISCONNECT and closes the connection.
func (c *conn) disconnect() {
	_ = c.write(disconnectPacket())
	c.close()
}

// close ends the connection (idempotent).
func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.nc.Close()
	})
}

// closeOnCancel closes c when ctx ends, so that a blocked read returns.
// The returned function stops the watch.
func closeOnCancel(ctx context.Context, c *conn) (stop func()) {
	unwatch := context.AfterFunc(ctx, c.close)
	return func() { _ = unwatch() }
}

package broker

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sockmq/sockmq/internal/origin"
)

// Config is the broker's configuration. The zero value of every field is
// documented; Defaults returns the values sockmq starts with when no
// configuration file is given.
type Config struct {
	// Listeners says where the broker accepts connections.
	Listeners Listeners `yaml:"listeners"`
	// Limits bounds what a single client may cost the broker.
	Limits Limits `yaml:"limits"`
	// Persistence controls the embedded store for retained messages and
	// persistent sessions.
	Persistence Persistence `yaml:"persistence"`
}

// Listeners configures the network listeners. An empty address disables a
// listener.
type Listeners struct {
	// MQTT is the plain MQTT over TCP listener. Default 127.0.0.1:1883.
	MQTT TCPListener `yaml:"mqtt"`
	// MQTTTLS is MQTT over TLS. Disabled unless an address is set; then
	// cert_file and key_file are required.
	MQTTTLS TLSListener `yaml:"mqtt_tls"`
	// HTTP serves MQTT over WebSocket, /healthz, /metrics and the
	// SocketCluster bridge. Default 127.0.0.1:8080.
	HTTP HTTPListener `yaml:"http"`
}

// TCPListener is a plain TCP listener.
type TCPListener struct {
	// Address is host:port. Empty disables the listener.
	Address string `yaml:"address"`
}

// TLSListener is a TCP listener that speaks TLS.
type TLSListener struct {
	// Address is host:port. Empty disables the listener.
	Address string `yaml:"address"`
	// CertFile is a PEM certificate chain. Required when Address is set.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key for CertFile. Required when Address is set.
	KeyFile string `yaml:"key_file"`
}

// HTTPListener is the HTTP (optionally HTTPS) listener.
type HTTPListener struct {
	// Address is host:port. Empty disables the listener.
	Address string `yaml:"address"`
	// CertFile and KeyFile turn on TLS when both are set.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key for CertFile.
	KeyFile string `yaml:"key_file"`
	// MQTTPath is where MQTT over WebSocket is served. Default /mqtt.
	MQTTPath string `yaml:"mqtt_path"`
	// AllowedOrigins lists the web page origins (scheme://host[:port])
	// that may open WebSockets on this listener, MQTT over WebSocket and
	// the SocketCluster bridge alike, besides the listener's own origin;
	// "*" allows any page. Empty (the default) means same origin only.
	// Upgrades without an Origin header (devices, servers) are always
	// accepted.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// ReadTimeout bounds the time a request (headers and body) may take to
	// arrive; a connection whose request is late is closed. It does not
	// apply to WebSockets once upgraded (MQTT keepalive and bridge pings
	// watch those). Zero means 10s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request before it is closed. Zero means 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// Limits bounds the resources a client may use.
type Limits struct {
	// MaxConnections caps the open connections of every listener
	// together: MQTT over TCP, TLS and WebSocket, bridge sockets and plain
	// HTTP, counted when accepted. At the cap an idle keep-alive HTTP
	// connection is closed to make room if there is one; otherwise MQTT
	// gets CONNACK "server busy" and HTTP 503, and the connection is
	// closed. It is lowered to fit the process's open-file limit. Zero
	// means no limit (the open-file limit still applies). Default 100000.
	MaxConnections int64 `yaml:"max_connections"`
	// MaxConnectionsPerAddress caps the open connections from one client
	// address (IPv4 address, IPv6 /64), refused like MaxConnections. Zero
	// (the default) means no limit.
	MaxConnectionsPerAddress int64 `yaml:"max_connections_per_address"`
	// MaxPacketSize is the largest MQTT packet accepted, in bytes; larger
	// packets are refused before they are read. Zero means the default,
	// 1 MiB; at most 268435455 (the MQTT maximum).
	MaxPacketSize uint32 `yaml:"max_packet_size"`
	// ConnectTimeout is how long a new connection may take to send CONNECT
	// before it is closed. Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxQueuedMessages is the per-client queue of messages waiting to be
	// written; when it is full further messages to that client are dropped
	// and counted. Default 1024.
	MaxQueuedMessages int32 `yaml:"max_queued_messages"`
	// MaxSubscriptions caps the subscriptions one MQTT client may hold;
	// filters beyond it are refused in SUBACK (MQTT 5 0x97 quota exceeded,
	// 3.1.1 0x80). Zero means the default, 10000.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxSubscriptionsTotal caps the subscriptions all MQTT clients hold
	// together (the sockmq_subscriptions gauge); new filters beyond it are
	// refused as for MaxSubscriptions. Zero means no limit. Default 1000000.
	MaxSubscriptionsTotal int64 `yaml:"max_subscriptions_total"`
	// SubscribeRate is how many topic filters per second one MQTT client
	// may subscribe to (re-subscribing counts: it replays retained
	// messages), after a burst of SubscribeBurst; filters beyond it are
	// refused as for MaxSubscriptions. Zero means no limit. Default 100.
	SubscribeRate float64 `yaml:"subscribe_rate"`
	// SubscribeBurst is how many filters a client may subscribe to at once
	// before SubscribeRate applies. Zero means the default, 1000.
	SubscribeBurst int `yaml:"subscribe_burst"`
	// MaxInflight is the number of QoS 1/2 messages kept per session,
	// including those queued for offline persistent sessions. Default 8192.
	MaxInflight uint16 `yaml:"max_inflight"`
	// KeepaliveMin raises shorter (non-zero) keepalives of MQTT 5 clients to
	// this value through the server keepalive property. Zero means no minimum.
	KeepaliveMin time.Duration `yaml:"keepalive_min"`
	// KeepaliveMax is the longest keepalive accepted. MQTT 5 clients asking
	// for more (or for none) are told to use it; MQTT 3 clients asking for
	// more are refused, as mosquitto does. Zero means no maximum.
	KeepaliveMax time.Duration `yaml:"keepalive_max"`
	// MaxMessageExpiry caps how long retained and queued messages live.
	// Zero (the default) means they never expire unless the publisher set an
	// MQTT 5 message expiry.
	MaxMessageExpiry time.Duration `yaml:"max_message_expiry"`
	// MaxSessionExpiry caps how long a disconnected persistent session is
	// kept. Zero (the default) means no cap.
	MaxSessionExpiry time.Duration `yaml:"max_session_expiry"`
	// ThrottleQueued is the publisher throttle: when the QoS 1/2 messages
	// waiting for connected subscribers beyond their send windows, all
	// sessions together, reach it, the broker stops reading clients that
	// publish until the backlog is below half of it. A subscriber that
	// acknowledges nothing for 2s meanwhile stops counting; one slow
	// subscriber is bounded by MaxInflight instead. Zero means the
	// default, 65536; -1 turns the throttle off.
	ThrottleQueued int64 `yaml:"throttle_queued"`
}

// Persistence configures the embedded store.
type Persistence struct {
	// Enabled turns the store on. Default true.
	Enabled bool `yaml:"enabled"`
	// DataDir holds the store file (sockmq.db). Default ./data.
	DataDir string `yaml:"data_dir"`
	// Sync makes every store write durable on disk (fsync) before the next
	// batch starts. Default true.
	Sync bool `yaml:"sync"`
}

// Defaults of the HTTP listener's timeouts.
const (
	defaultHTTPReadTimeout = 10 * time.Second
	defaultHTTPIdleTimeout = 60 * time.Second
)

// maxMQTTPacket is the largest packet MQTT can express (remaining length
// 268435455 plus a 5-byte fixed header; we cap at the remaining length).
const maxMQTTPacket = 268435455

// Defaults returns the configuration sockmq uses with no file: loopback-only
// listeners, persistence on in ./data.
func Defaults() Config {
	return Config{
		Listeners: Listeners{
			MQTT: TCPListener{Address: "127.0.0.1:1883"},
			HTTP: HTTPListener{Address: "127.0.0.1:8080", MQTTPath: "/mqtt", AllowedOrigins: []string{},
				ReadTimeout: defaultHTTPReadTimeout, IdleTimeout: defaultHTTPIdleTimeout},
		},
		Limits: Limits{
			MaxConnections:    100000,
			MaxPacketSize:     1 << 20,
			ConnectTimeout:    10 * time.Second,
			MaxQueuedMessages: 1024,
			MaxSubscriptions:  10000,
			MaxInflight:       8192,
			ThrottleQueued:    defaultThrottleQueued,

			MaxSubscriptionsTotal: 1000000,
			SubscribeRate:         100,
			SubscribeBurst:        1000,
		},
		Persistence: Persistence{Enabled: true, DataDir: "./data", Sync: true},
	}
}

// Validate reports every problem in c at once. Each error names the
// configuration key it is about.
func (c Config) Validate() error {
	var errs []error
	file := func(key, path string) {
		if path == "" {
			return
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	l := c.Listeners
	errs = append(errs, checkListeners(l)...)
	if l.MQTTTLS.Address != "" {
		if l.MQTTTLS.CertFile == "" {
			errs = append(errs, errors.New("listeners.mqtt_tls.cert_file: required when listeners.mqtt_tls.address is set"))
		}
		if l.MQTTTLS.KeyFile == "" {
			errs = append(errs, errors.New("listeners.mqtt_tls.key_file: required when listeners.mqtt_tls.address is set"))
		}
	}
	file("listeners.mqtt_tls.cert_file", l.MQTTTLS.CertFile)
	file("listeners.mqtt_tls.key_file", l.MQTTTLS.KeyFile)
	if (l.HTTP.CertFile == "") != (l.HTTP.KeyFile == "") {
		errs = append(errs, errors.New("listeners.http: cert_file and key_file must be set together"))
	}
	file("listeners.http.cert_file", l.HTTP.CertFile)
	file("listeners.http.key_file", l.HTTP.KeyFile)
	if p := l.HTTP.MQTTPath; p != "" && p[0] != '/' {
		errs = append(errs, fmt.Errorf("listeners.http.mqtt_path: %q must start with /", p))
	}
	if err := origin.Validate("listeners.http.allowed_origins", l.HTTP.AllowedOrigins); err != nil {
		errs = append(errs, err)
	}
	if l.MQTT.Address == "" && l.MQTTTLS.Address == "" && l.HTTP.Address == "" {
		errs = append(errs, errors.New("listeners: every listener is disabled; set at least one address"))
	}

	lim := c.Limits
	if lim.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("limits.max_connections: %d must be >= 0", lim.MaxConnections))
	}
	if lim.MaxConnectionsPerAddress < 0 {
		errs = append(errs, fmt.Errorf("limits.max_connections_per_address: %d must be >= 0", lim.MaxConnectionsPerAddress))
	}
	if l.HTTP.ReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("listeners.http.read_timeout: %v must be >= 0", l.HTTP.ReadTimeout))
	}
	if l.HTTP.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("listeners.http.idle_timeout: %v must be >= 0", l.HTTP.IdleTimeout))
	}
	if lim.MaxPacketSize > maxMQTTPacket {
		errs = append(errs, fmt.Errorf("limits.max_packet_size: %d exceeds the MQTT maximum %d", lim.MaxPacketSize, maxMQTTPacket))
	}
	if lim.MaxPacketSize != 0 && lim.MaxPacketSize < 64 {
		errs = append(errs, fmt.Errorf("limits.max_packet_size: %d is too small to carry a CONNECT (minimum 64)", lim.MaxPacketSize))
	}
	if lim.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("limits.connect_timeout: %v must be >= 0", lim.ConnectTimeout))
	}
	if lim.MaxSubscriptions < 0 {
		errs = append(errs, fmt.Errorf("limits.max_subscriptions: %d must be >= 0", lim.MaxSubscriptions))
	}
	if lim.MaxSubscriptionsTotal < 0 {
		errs = append(errs, fmt.Errorf("limits.max_subscriptions_total: %d must be >= 0", lim.MaxSubscriptionsTotal))
	}
	if lim.SubscribeRate < 0 {
		errs = append(errs, fmt.Errorf("limits.subscribe_rate: %v must be >= 0", lim.SubscribeRate))
	}
	if lim.SubscribeBurst < 0 {
		errs = append(errs, fmt.Errorf("limits.subscribe_burst: %d must be >= 0", lim.SubscribeBurst))
	}
	if lim.ThrottleQueued < -1 {
		errs = append(errs, fmt.Errorf("limits.throttle_queued: %d must be >= -1 (-1 = off, 0 = default)", lim.ThrottleQueued))
	}
	if lim.MaxQueuedMessages < 0 {
		errs = append(errs, fmt.Errorf("limits.max_queued_messages: %d must be >= 0", lim.MaxQueuedMessages))
	}
	for _, k := range []struct {
		key string
		d   time.Duration
	}{{"limits.keepalive_min", lim.KeepaliveMin}, {"limits.keepalive_max", lim.KeepaliveMax}} {
		if k.d < 0 || k.d > 65535*time.Second {
			errs = append(errs, fmt.Errorf("%s: %v must be between 0s and 65535s", k.key, k.d))
		} else if k.d%time.Second != 0 {
			errs = append(errs, fmt.Errorf("%s: %v must be whole seconds", k.key, k.d))
		}
	}
	if lim.KeepaliveMax > 0 && lim.KeepaliveMin > lim.KeepaliveMax {
		errs = append(errs, fmt.Errorf("limits.keepalive_min: %v is above limits.keepalive_max %v", lim.KeepaliveMin, lim.KeepaliveMax))
	}
	if lim.MaxMessageExpiry < 0 {
		errs = append(errs, fmt.Errorf("limits.max_message_expiry: %v must be >= 0", lim.MaxMessageExpiry))
	}
	if lim.MaxSessionExpiry < 0 || lim.MaxSessionExpiry > (1<<32-1)*time.Second {
		errs = append(errs, fmt.Errorf("limits.max_session_expiry: %v out of range", lim.MaxSessionExpiry))
	}
	if c.Persistence.Enabled && c.Persistence.DataDir == "" {
		errs = append(errs, errors.New("persistence.data_dir: required when persistence.enabled is true"))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero values that have a documented default.
func (c Config) withDefaults() Config {
	if c.Listeners.HTTP.MQTTPath == "" {
		c.Listeners.HTTP.MQTTPath = "/mqtt"
	}
	if c.Listeners.HTTP.ReadTimeout == 0 {
		c.Listeners.HTTP.ReadTimeout = defaultHTTPReadTimeout
	}
	if c.Listeners.HTTP.IdleTimeout == 0 {
		c.Listeners.HTTP.IdleTimeout = defaultHTTPIdleTimeout
	}
	if c.Limits.MaxPacketSize == 0 {
		c.Limits.MaxPacketSize = 1 << 20
	}
	if c.Limits.ConnectTimeout == 0 {
		c.Limits.ConnectTimeout = 10 * time.Second
	}
	if c.Limits.MaxQueuedMessages == 0 {
		c.Limits.MaxQueuedMessages = 1024
	}
	if c.Limits.MaxSubscriptions == 0 {
		c.Limits.MaxSubscriptions = 10000
	}
	if c.Limits.MaxInflight == 0 {
		c.Limits.MaxInflight = 8192
	}
	if c.Limits.SubscribeBurst == 0 {
		c.Limits.SubscribeBurst = 1000
	}
	if c.Limits.ThrottleQueued == 0 {
		c.Limits.ThrottleQueued = defaultThrottleQueued
	}
	return c
}

package bridge

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sockmq/sockmq/internal/origin"
)

// Config configures the SocketCluster bridge. Each field documents its zero
// value; [Defaults] returns what sockmq runs with when the configuration
// file does not mention the bridge.
type Config struct {
	// Enabled serves the bridge on the HTTP listener. The zero value (false)
	// disables it; the default is true.
	Enabled bool `yaml:"enabled"`
	// Path is where SocketCluster clients connect. It is served both with
	// and without its trailing slash. Empty means /socketcluster/ (the
	// client's default path).
	Path string `yaml:"path"`
	// TopicPrefix is prepended to channel names to form MQTT topics:
	// channel "x" is topic TopicPrefix+"x". Empty (the default) maps
	// channels to topics of the same name.
	TopicPrefix string `yaml:"topic_prefix"`
	// ProtocolVersion is "auto" (detect per socket from its first pong),
	// "1" (clients up to 14: pings "#1") or "2" (clients 15+: pings "").
	// Empty means auto.
	ProtocolVersion string `yaml:"protocol_version"`
	// PingInterval is how often each socket is pinged, whatever its
	// traffic. It must be shorter than PingTimeout. Zero means 8s.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PingTimeout is sent to clients in the handshake (they close when no
	// ping arrives for that long), and a socket from which nothing arrives
	// for that long is closed with 4001. Zero means 20s.
	PingTimeout time.Duration `yaml:"ping_timeout"`
	// HandshakeTimeout is how long a new socket may take to send
	// #handshake before it is closed with 4005. Zero means 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxFrameSize is the largest inbound WebSocket message in bytes;
	// larger ones close the socket with 1009. Zero means 1 MiB.
	MaxFrameSize int `yaml:"max_frame_size"`
	// MaxSubscriptions caps the channels one socket may subscribe to. Zero
	// means 1000.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// SubscribeRate is how many #subscribe requests per second one socket
	// may make on average; beyond it (and beyond SubscribeBurst at once)
	// subscribes are refused with RateLimitError. #unsubscribe is never
	// refused. Zero means 20.
	SubscribeRate float64 `yaml:"subscribe_rate"`
	// SubscribeBurst is how many #subscribe requests one socket may make at
	// once (a reconnecting client resubscribes all its channels). Zero
	// means 1000.
	SubscribeBurst int `yaml:"subscribe_burst"`
	// InvokeRate is how many procedure calls (invoke or transmit of a
	// procedure such as presence or setWill; not login, logout or the
	// #-events) per second one socket may make on average; beyond it calls
	// are refused with RateLimitError. Zero means 50.
	InvokeRate float64 `yaml:"invoke_rate"`
	// InvokeBurst is how many procedure calls one socket may make at once.
	// Zero means 100.
	InvokeBurst int `yaml:"invoke_burst"`
	// MaxQueueBytes caps the bytes waiting to be written to one socket. A
	// socket that falls further behind is closed with 4100 (the client
	// reconnects after its back-off) and counted in
	// sockmq_bridge_slow_consumers_total. Zero means 4 MiB.
	MaxQueueBytes int `yaml:"max_queue_bytes"`
	// WriteTimeout bounds each write to a socket. Zero means 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// AllowedOrigins lists the web page origins (scheme://host[:port])
	// that may connect besides the listener's own origin; "*" allows any.
	// Empty (the default) means same origin only: unlike
	// socketcluster-server, which accepts any origin unless told
	// otherwise, so that a page the user visits cannot open the bridge
	// with the user's network position. Requests without an Origin header
	// (non-browser clients) are always accepted. In sockmq's configuration
	// file this key is a deprecated alias: listeners.http.allowed_origins
	// applies to the bridge and to MQTT over WebSocket alike, and sockmq
	// gives the bridge the union of both lists.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AuthKey is the HS256 key that signs auth tokens. Empty means a random
	// key generated once and kept in <data_dir>/bridge-auth.key (mode 0600),
	// so that tokens survive restarts. When set it must be at least 16
	// bytes long.
	AuthKey string `yaml:"auth_key"`
	// TokenExpiry is the lifetime of the tokens issued by login. Zero means
	// 24h.
	TokenExpiry time.Duration `yaml:"token_expiry"`
	// LoginTimeout applies when anonymous access is off: a socket that is
	// not logged in this long after its handshake (or after it logged out
	// or lost its token) is closed with 4501, which stock clients do not
	// reconnect after. Zero means 10s.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// MaxFailedLogins is how many failed logins one socket may make; the
	// answer to the last one is followed by a close with 4502. Zero means 5.
	MaxFailedLogins int `yaml:"max_failed_logins"`
}

// Default values applied by New to zero fields.
const (
	DefaultPath             = "/socketcluster/"
	DefaultPingInterval     = 8 * time.Second
	DefaultPingTimeout      = 20 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxFrameSize     = 1 << 20
	DefaultMaxSubscriptions = 1000
	DefaultMaxQueueBytes    = 4 << 20
	DefaultSubscribeRate    = 20
	DefaultSubscribeBurst   = 1000
	DefaultInvokeRate       = 50
	DefaultInvokeBurst      = 100
	DefaultWriteTimeout     = 10 * time.Second
	DefaultTokenExpiry      = 24 * time.Hour
	DefaultLoginTimeout     = 10 * time.Second
	DefaultMaxFailedLogins  = 5
)

// Defaults returns the configuration sockmq uses when the file does not
// mention the bridge.
func Defaults() Config {
	return Config{
		Enabled:          true,
		Path:             DefaultPath,
		TopicPrefix:      "",
		ProtocolVersion:  "auto",
		PingInterval:     DefaultPingInterval,
		PingTimeout:      DefaultPingTimeout,
		HandshakeTimeout: DefaultHandshakeTimeout,
		MaxFrameSize:     DefaultMaxFrameSize,
		MaxSubscriptions: DefaultMaxSubscriptions,
		SubscribeRate:    DefaultSubscribeRate,
		SubscribeBurst:   DefaultSubscribeBurst,
		InvokeRate:       DefaultInvokeRate,
		InvokeBurst:      DefaultInvokeBurst,
		MaxQueueBytes:    DefaultMaxQueueBytes,
		WriteTimeout:     DefaultWriteTimeout,
		AllowedOrigins:   []string{},
		TokenExpiry:      DefaultTokenExpiry,
		LoginTimeout:     DefaultLoginTimeout,
		MaxFailedLogins:  DefaultMaxFailedLogins,
	}
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.ProtocolVersion == "" {
		c.ProtocolVersion = "auto"
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingTimeout == 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if c.SubscribeRate == 0 {
		c.SubscribeRate = DefaultSubscribeRate
	}
	if c.SubscribeBurst == 0 {
		c.SubscribeBurst = DefaultSubscribeBurst
	}
	if c.InvokeRate == 0 {
		c.InvokeRate = DefaultInvokeRate
	}
	if c.InvokeBurst == 0 {
		c.InvokeBurst = DefaultInvokeBurst
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.TokenExpiry == 0 {
		c.TokenExpiry = DefaultTokenExpiry
	}
	if c.LoginTimeout == 0 {
		c.LoginTimeout = DefaultLoginTimeout
	}
	if c.MaxFailedLogins == 0 {
		c.MaxFailedLogins = DefaultMaxFailedLogins
	}
	return c
}

// Validate reports every problem at once, each naming its key
// (bridge.xxx).
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("bridge.%s: "+format, append([]any{key}, args...)...))
	}
	if c.Path != "" && (c.Path[0] != '/' || strings.ContainsAny(c.Path, " ?#{}") || strings.Trim(c.Path, "/") == "") {
		add("path", "%q must start with / and name a path other than / (no spaces, ?, #, { or })", c.Path)
	}
	if !utf8.ValidString(c.TopicPrefix) || strings.ContainsAny(c.TopicPrefix, "+#\x00") {
		add("topic_prefix", "%q must be UTF-8 without +, # or NUL", c.TopicPrefix)
	}
	switch c.ProtocolVersion {
	case "", "auto", "1", "2":
	default:
		add("protocol_version", "%q must be auto, 1 or 2", c.ProtocolVersion)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"ping_interval", c.PingInterval}, {"ping_timeout", c.PingTimeout}, {"handshake_timeout", c.HandshakeTimeout},
		{"write_timeout", c.WriteTimeout}, {"token_expiry", c.TokenExpiry}, {"login_timeout", c.LoginTimeout},
	} {
		if d.v < 0 {
			add(d.key, "%v must be >= 0", d.v)
		}
	}
	d := c.withDefaults()
	if c.PingInterval >= 0 && c.PingTimeout >= 0 && d.PingInterval >= d.PingTimeout {
		add("ping_interval", "%v must be shorter than bridge.ping_timeout (%v)", d.PingInterval, d.PingTimeout)
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"max_frame_size", c.MaxFrameSize}, {"max_subscriptions", c.MaxSubscriptions}, {"max_queue_bytes", c.MaxQueueBytes},
		{"max_failed_logins", c.MaxFailedLogins}, {"subscribe_burst", c.SubscribeBurst}, {"invoke_burst", c.InvokeBurst},
	} {
		if n.v < 0 {
			add(n.key, "%d must be >= 0", n.v)
		}
	}
	for _, r := range []struct {
		key string
		v   float64
	}{{"subscribe_rate", c.SubscribeRate}, {"invoke_rate", c.InvokeRate}} {
		if !(r.v >= 0) || math.IsInf(r.v, 0) {
			add(r.key, "%v must be a number >= 0", r.v)
		}
	}
	if c.MaxFrameSize > 0 && c.MaxFrameSize < 256 {
		add("max_frame_size", "%d is too small for a handshake (minimum 256)", c.MaxFrameSize)
	}
	if c.MaxQueueBytes > 0 && c.MaxQueueBytes < 1024 {
		add("max_queue_bytes", "%d is too small (minimum 1024)", c.MaxQueueBytes)
	}
	if err := origin.Validate("bridge.allowed_origins", c.AllowedOrigins); err != nil {
		errs = append(errs, err)
	}
	if c.AuthKey != "" && len(c.AuthKey) < 16 {
		add("auth_key", "must be at least 16 bytes long (leave it empty to generate one)")
	}
	return errors.Join(errs...)
}

// Paths returns the patterns to mount the bridge on: the path with and
// without its trailing slash.
func (c Config) Paths() []string {
	p := c.withDefaults().Path
	trimmed := strings.TrimRight(p, "/")
	return []string{trimmed, trimmed + "/"}
}

package lwt

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Will is a will ready to publish.
type Will struct {
	Topic       string
	Payload     []byte
	ContentType string
	// PayloadFormat is the MQTT 5 payload format indicator (1 = UTF-8).
	PayloadFormat    byte
	HasPayloadFormat bool
	QoS              byte
	Retain           bool
	Delay            time.Duration
}

// Owner identifies the socket a will belongs to.
type Owner struct {
	// SessionID is the bridge socket id.
	SessionID string
	// Username is the authenticated user; empty when anonymous.
	Username string
}

// Request is the data of the setWill invoke.
type Request struct {
	Channel      string          `json:"channel"`
	Data         json.RawMessage `json:"data"`
	Retain       bool            `json:"retain"`
	DelaySeconds float64         `json:"delaySeconds"`
	QoS          *byte           `json:"qos"`
}

// Encoded is a payload mapped from SocketCluster data to MQTT.
type Encoded struct {
	Payload          []byte
	ContentType      string
	PayloadFormat    byte
	HasPayloadFormat bool
}

// Encoder maps setWill's channel and data the way a publish is mapped:
// channel to topic (validated, prefix applied) and data to payload.
type Encoder interface {
	EncodeWill(channel string, data json.RawMessage) (topic string, e Encoded, err error)
}

// Authorizer says whether a socket may publish to a topic.
type Authorizer interface {
	MayWrite(o Owner, topic string) bool
}

// Publisher publishes a will.
type Publisher interface {
	PublishWill(w Will) error
}

// Config bounds wills.
type Config struct {
	// MaxDelay is the longest delaySeconds accepted. Zero means 1h.
	MaxDelay time.Duration `yaml:"max_delay"`
	// MaxWillsPerSocket caps the wills (one per channel) one socket may
	// hold. Zero means 16.
	MaxWillsPerSocket int `yaml:"max_wills_per_socket"`
	// MaxBytesPerUser caps the bytes (topic, payload and content type) of
	// the wills one user holds: those of its open sockets and the delayed
	// wills of its ended ones. Each anonymous socket counts as a user of
	// its own. Zero means 1 MiB.
	MaxBytesPerUser int `yaml:"max_bytes_per_user"`
	// MaxBytes caps the bytes of all wills held, open and pending. Zero
	// means 64 MiB.
	MaxBytes int `yaml:"max_bytes"`
}

// Default limits applied to zero Config fields.
const (
	DefaultMaxDelay          = time.Hour
	DefaultMaxWillsPerSocket = 16
	DefaultMaxBytesPerUser   = 1 << 20
	DefaultMaxBytes          = 64 << 20
)

// Defaults returns the configuration sockmq uses when the file does not
// mention wills.
func Defaults() Config {
	return Config{MaxDelay: DefaultMaxDelay, MaxWillsPerSocket: DefaultMaxWillsPerSocket,
		MaxBytesPerUser: DefaultMaxBytesPerUser, MaxBytes: DefaultMaxBytes}
}

func (c Config) withDefaults() Config {
	d := Defaults()
	if c.MaxDelay == 0 {
		c.MaxDelay = d.MaxDelay
	}
	if c.MaxWillsPerSocket == 0 {
		c.MaxWillsPerSocket = d.MaxWillsPerSocket
	}
	if c.MaxBytesPerUser == 0 {
		c.MaxBytesPerUser = d.MaxBytesPerUser
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = d.MaxBytes
	}
	return c
}

// Validate checks the configuration, reporting every problem; errors name
// the key.
func (c Config) Validate() error {
	var errs []error
	if c.MaxDelay < 0 {
		errs = append(errs, fmt.Errorf("lwt.max_delay: %v must be >= 0", c.MaxDelay))
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"max_wills_per_socket", c.MaxWillsPerSocket}, {"max_bytes_per_user", c.MaxBytesPerUser}, {"max_bytes", c.MaxBytes}} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("lwt.%s: %d must be >= 0", n.key, n.v))
		}
	}
	return errors.Join(errs...)
}

// Error is a refusal of setWill or clearWill with a SocketCluster error name.
type Error struct {
	Name    string
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Name + ": " + e.Message }

package lwt

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
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
}

// Validate checks the configuration; errors name the key.
func (c Config) Validate() error {
	if c.MaxDelay < 0 {
		return fmt.Errorf("lwt.max_delay: %v must be >= 0", c.MaxDelay)
	}
	return nil
}

// Error is a refusal of setWill or clearWill with a SocketCluster error name.
type Error struct {
	Name    string
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Name + ": " + e.Message }

type entry struct {
	owner Owner
	will  Will
}

// Registry keeps the wills of live sockets and the pending delayed wills of
// ended ones.
type Registry struct {
	cfg  Config
	enc  Encoder
	auth Authorizer
	pub  Publisher
	log  *slog.Logger

	mu      sync.Mutex
	live    map[string]map[string]entry // session id -> channel -> will
	pending map[pendingKey]*time.Timer  // delayed wills of ended sockets
	closed  bool
}

// pendingKey identifies a pending delayed will: per user and topic for
// authenticated sockets (so the user's next socket can cancel it), per
// socket for anonymous ones.
type pendingKey struct{ user, session, topic string }

func keyOf(o Owner, topic string) pendingKey {
	if o.Username == "" {
		return pendingKey{session: o.SessionID, topic: topic}
	}
	return pendingKey{user: o.Username, topic: topic}
}

// New returns a registry.
func New(cfg Config, enc Encoder, auth Authorizer, pub Publisher, log *slog.Logger) *Registry {
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = time.Hour
	}
	if log == nil {
		log = slog.Default()
	}
	return &Registry{
		cfg: cfg, enc: enc, auth: auth, pub: pub, log: log.With("component", "lwt"),
		live:    make(map[string]map[string]entry),
		pending: make(map[pendingKey]*time.Timer),
	}
}

// Set registers (or replaces) the will of socket o for req.Channel. A
// socket may hold one will per channel.
func (r *Registry) Set(o Owner, req Request) error {
	if req.Channel == "" {
		return &Error{Name: "InvalidArgumentsError", Message: "setWill needs a channel"}
	}
	if req.DelaySeconds < 0 || time.Duration(req.DelaySeconds*float64(time.Second)) > r.cfg.MaxDelay {
		return &Error{Name: "InvalidArgumentsError", Message: fmt.Sprintf("delaySeconds must be between 0 and %v", r.cfg.MaxDelay.Seconds())}
	}
	qos := byte(1)
	if req.QoS != nil {
		if *req.QoS > 2 {
			return &Error{Name: "InvalidArgumentsError", Message: "qos must be 0, 1 or 2"}
		}
		qos = *req.QoS
	}
	topic, e, err := r.enc.EncodeWill(req.Channel, req.Data)
	if err != nil {
		return &Error{Name: "InvalidArgumentsError", Message: err.Error()}
	}
	if !r.auth.MayWrite(o, topic) {
		return &Error{Name: "ForbiddenError", Message: fmt.Sprintf("not allowed to publish to %s, so not allowed to leave a will there", req.Channel)}
	}
	w := Will{
		Topic: topic, Payload: e.Payload, ContentType: e.ContentType, PayloadFormat: e.PayloadFormat,
		HasPayloadFormat: e.HasPayloadFormat, QoS: qos, Retain: req.Retain,
		Delay: time.Duration(req.DelaySeconds * float64(time.Second)),
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return &Error{Name: "BrokerError", Message: "shutting down"}
	}
	r.cancelPendingLocked(o, topic)
	m := r.live[o.SessionID]
	if m == nil {
		m = make(map[string]entry)
		r.live[o.SessionID] = m
	}
	m[req.Channel] = entry{owner: o, will: w}
	return nil
}

// Clear removes the will of socket o for channel, or all its wills when
// channel is empty. It also cancels the same user's pending delayed wills
// on those topics.
func (r *Registry) Clear(o Owner, channel string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.live[o.SessionID]
	for ch, e := range m {
		if channel == "" || ch == channel {
			delete(m, ch)
			r.cancelPendingLocked(o, e.will.Topic)
		}
	}
	if channel != "" {
		if topic, _, err := r.enc.EncodeWill(channel, json.RawMessage(`null`)); err == nil {
			r.cancelPendingLocked(o, topic)
		}
	}
	if len(m) == 0 {
		delete(r.live, o.SessionID)
	}
}

func (r *Registry) cancelPendingLocked(o Owner, topic string) {
	if o.Username == "" {
		return // an anonymous socket cannot speak for another one
	}
	k := keyOf(o, topic)
	if t, ok := r.pending[k]; ok {
		t.Stop()
		delete(r.pending, k)
		r.log.Info("pending will cancelled: the user is back", "user", o.Username, "topic", topic)
	}
}

// Ended reports that socket sessionID ended; clean says whether the client
// closed it itself. Unclean endings publish the socket's wills (after
// their delay).
func (r *Registry) Ended(sessionID string, clean bool) {
	r.mu.Lock()
	m := r.live[sessionID]
	delete(r.live, sessionID)
	if clean || len(m) == 0 || r.closed {
		r.mu.Unlock()
		return
	}
	var now []entry
	for _, e := range m {
		if e.will.Delay <= 0 {
			now = append(now, e)
			continue
		}
		e := e
		k := keyOf(e.owner, e.will.Topic)
		if old, ok := r.pending[k]; ok {
			old.Stop()
		}
		var t *time.Timer
		t = time.AfterFunc(e.will.Delay, func() {
			r.mu.Lock()
			if r.pending[k] != t {
				r.mu.Unlock()
				return
			}
			delete(r.pending, k)
			r.mu.Unlock()
			r.send(e)
		})
		r.pending[k] = t
	}
	r.mu.Unlock()
	for _, e := range now {
		r.send(e)
	}
}

// send re-checks the permission and publishes.
func (r *Registry) send(e entry) {
	if !r.auth.MayWrite(e.owner, e.will.Topic) {
		r.log.Info("will dropped: topic no longer permitted", "session", e.owner.SessionID, "user", e.owner.Username, "topic", e.will.Topic)
		return
	}
	if err := r.pub.PublishWill(e.will); err != nil {
		r.log.Warn("will not published", "session", e.owner.SessionID, "topic", e.will.Topic, "error", err)
		return
	}
	r.log.Debug("will published", "session", e.owner.SessionID, "topic", e.will.Topic)
}

// Pending reports how many delayed wills are waiting.
func (r *Registry) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// Close stops pending timers; later calls do nothing.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for k, t := range r.pending {
		t.Stop()
		delete(r.pending, k)
	}
}

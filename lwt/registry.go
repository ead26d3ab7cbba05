package lwt

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sockmq/sockmq/internal/limit"
)

type entry struct {
	owner   Owner
	channel string
	will    Will
	size    int    // bytes counted against the limits
	seq     uint64 // tells a replaced will from its replacement
}

// pendingWill is the delayed will of an ended socket.
type pendingWill struct {
	e     entry
	timer *time.Timer
}

// Registry keeps the wills of live sockets and the pending delayed wills of
// ended ones, within the limits of its Config.
type Registry struct {
	cfg  Config
	enc  Encoder
	auth Authorizer
	pub  Publisher
	rec  *limit.Recorder
	log  *slog.Logger

	mu      sync.Mutex
	live    map[string]map[string]entry // session id -> channel -> will
	pending map[pendingKey]*pendingWill // delayed wills of ended sockets
	held    map[account]int             // bytes of live and pending wills per user
	total   int                         // bytes of all live and pending wills
	closed  bool
	seq     uint64
	store   Store // nil: wills live in memory only

	stripes storeStripes // order of one socket's store calls
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

// New returns a registry. Refusals by the limits are counted and logged
// through rec (nil: counted in a recorder that exports nothing).
func New(cfg Config, enc Encoder, auth Authorizer, pub Publisher, rec *limit.Recorder, log *slog.Logger) *Registry {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "lwt")
	if rec == nil {
		rec = limit.NewRecorder(nil, log)
	}
	rec.Declare(limitWillsPerSocket, limitBytesPerUser, limitBytesTotal)
	return &Registry{
		cfg: cfg, enc: enc, auth: auth, pub: pub, rec: rec, log: log,
		live:    make(map[string]map[string]entry),
		pending: make(map[pendingKey]*pendingWill),
		held:    make(map[account]int),
	}
}

// Set registers (or replaces) the will of socket o for req.Channel. A
// socket may hold one will per channel, up to Config.MaxWillsPerSocket
// channels, within the byte limits.
func (r *Registry) Set(o Owner, req Request) error {
	if req.Channel == "" {
		return &Error{Name: "InvalidArgumentsError", Message: "setWill needs a channel"}
	}
	// Compare as numbers first: a huge delay overflows time.Duration.
	if !(req.DelaySeconds >= 0 && req.DelaySeconds <= r.cfg.MaxDelay.Seconds()) {
		return &Error{Name: "InvalidArgumentsError", Message: fmt.Sprintf("delaySeconds must be a number between 0 and %v", r.cfg.MaxDelay.Seconds())}
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
	ne := entry{owner: o, channel: req.Channel, will: w, size: len(topic) + len(w.Payload) + len(w.ContentType)}
	stripe := r.stripes.of(o.SessionID)
	stripe.Lock()
	defer stripe.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return &Error{Name: "BrokerError", Message: "shutting down"}
	}
	r.seq++
	ne.seq = r.seq
	st := r.store
	var cancelled []entry
	if p, ok := r.cancelPendingLocked(o, topic); ok {
		cancelled = append(cancelled, p)
	}
	m := r.live[o.SessionID]
	old, replacing := m[req.Channel]
	if refusal := r.checkLocked(ne, len(m), old, replacing); refusal != nil {
		r.mu.Unlock()
		r.forget(st, cancelled)
		r.rec.Hit(refusal.limit, "will refused: "+refusal.key+" reached", "client", o.SessionID, "user", o.Username,
			"channel", req.Channel, "bytes", ne.size, refusal.key, refusal.value)
		return &Error{Name: ErrNameLimit, Message: refusal.message}
	}
	if replacing {
		r.releaseLocked(old)
	}
	if m == nil {
		m = make(map[string]entry)
		r.live[o.SessionID] = m
	}
	r.holdLocked(ne)
	m[req.Channel] = ne
	r.mu.Unlock()
	r.forget(st, cancelled)
	if st == nil {
		return nil
	}
	if err := st.Put(o, req.Channel, w); err != nil {
		r.mu.Lock()
		if cur, ok := r.live[o.SessionID][req.Channel]; ok && cur.seq == ne.seq {
			delete(r.live[o.SessionID], req.Channel)
			r.releaseLocked(cur)
			if len(r.live[o.SessionID]) == 0 {
				delete(r.live, o.SessionID)
			}
		}
		r.mu.Unlock()
		r.log.Warn("will refused: the cluster's will store is unreachable", "session", o.SessionID, "channel", req.Channel, "error", err)
		return &Error{Name: "BrokerError", Message: "the will could not be stored in the cluster; try again"}
	}
	return nil
}

// Clear removes the will of socket o for channel, or all its wills when
// channel is empty. It also cancels the same user's pending delayed wills
// on those topics.
func (r *Registry) Clear(o Owner, channel string) {
	stripe := r.stripes.of(o.SessionID)
	stripe.Lock()
	defer stripe.Unlock()
	r.mu.Lock()
	st := r.store
	var gone []entry
	m := r.live[o.SessionID]
	for ch, e := range m {
		if channel == "" || ch == channel {
			delete(m, ch)
			r.releaseLocked(e)
			gone = append(gone, e)
			if p, ok := r.cancelPendingLocked(o, e.will.Topic); ok {
				gone = append(gone, p)
			}
		}
	}
	if channel != "" {
		if topic, _, err := r.enc.EncodeWill(channel, json.RawMessage(`null`)); err == nil {
			if p, ok := r.cancelPendingLocked(o, topic); ok {
				gone = append(gone, p)
			}
		}
	}
	if len(m) == 0 {
		delete(r.live, o.SessionID)
	}
	r.mu.Unlock()
	r.forget(st, gone)
}

// cancelPendingLocked cancels the pending delayed will of o's user on
// topic and returns it (for the store).
func (r *Registry) cancelPendingLocked(o Owner, topic string) (entry, bool) {
	if o.Username == "" {
		return entry{}, false // an anonymous socket cannot speak for another one
	}
	k := keyOf(o, topic)
	p, ok := r.pending[k]
	if !ok {
		return entry{}, false
	}
	p.timer.Stop()
	delete(r.pending, k)
	r.releaseLocked(p.e)
	r.log.Info("pending will cancelled: the user is back", "user", o.Username, "topic", topic)
	return p.e, true
}

// Ended reports that socket sessionID ended; clean says whether the client
// closed it itself. Unclean endings publish the socket's wills (after
// their delay).
func (r *Registry) Ended(sessionID string, clean bool) {
	stripe := r.stripes.of(sessionID)
	stripe.Lock()
	defer stripe.Unlock()
	r.mu.Lock()
	st := r.store
	m := r.live[sessionID]
	delete(r.live, sessionID)
	if clean || len(m) == 0 || r.closed {
		var gone []entry
		for _, e := range m {
			r.releaseLocked(e)
			gone = append(gone, e)
		}
		closed := r.closed
		r.mu.Unlock()
		if !closed {
			r.forget(st, gone)
		}
		return
	}
	var now, replaced []entry
	for _, e := range m {
		if e.will.Delay <= 0 {
			r.releaseLocked(e)
			now = append(now, e)
			continue
		}
		k := keyOf(e.owner, e.will.Topic)
		if old, ok := r.pending[k]; ok {
			old.timer.Stop()
			r.releaseLocked(old.e)
			replaced = append(replaced, old.e)
		}
		p := &pendingWill{e: e}
		p.timer = time.AfterFunc(e.will.Delay, func() {
			r.mu.Lock()
			if r.pending[k] != p {
				r.mu.Unlock()
				return
			}
			delete(r.pending, k)
			r.releaseLocked(p.e)
			r.mu.Unlock()
			if r.claim(st, p.e) {
				r.send(p.e)
			}
		})
		r.pending[k] = p
	}
	r.mu.Unlock()
	r.forget(st, replaced)
	for _, e := range now {
		if r.claim(st, e) {
			r.send(e)
		}
	}
}

// send re-checks the permission and publishes.
func (r *Registry) send(e entry) {
	if !r.auth.MayWrite(e.owner, e.will.Topic) {
		r.log.Info("will dropped: the user may no longer publish there", "session", e.owner.SessionID, "user", e.owner.Username, "topic", e.will.Topic)
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

// HeldBytes reports the bytes of all wills held, live and pending.
func (r *Registry) HeldBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// Close stops pending timers; later calls do nothing.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for k, p := range r.pending {
		p.timer.Stop()
		delete(r.pending, k)
	}
	clear(r.live)
	clear(r.held)
	r.total = 0
}

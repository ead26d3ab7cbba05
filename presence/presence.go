package presence

import (
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmq/sockmq/internal/topic"
)

// Topics used by presence.
const (
	// ClientsPrefix is the prefix of the per-session retained documents.
	ClientsPrefix = topic.Presence + "/clients/"
	// ClientsFilter matches every per-session document.
	ClientsFilter = topic.Presence + "/clients/+"
	// ConnectedTopic carries an event for every new session.
	ConnectedTopic = topic.Presence + "/connected"
	// DisconnectedTopic carries an event for every ended session.
	DisconnectedTopic = topic.Presence + "/disconnected"
)

// ReasonTakeover is the disconnect reason of a connection replaced by a new
// one with the same id.
const ReasonTakeover = "takeover"

// ReasonMoved is the disconnect reason of a session that continues on
// another cluster node (taken over there): it leaves this node's list
// without a disconnected event or a cleared document, which the new node
// has already published.
const ReasonMoved = "moved"

// Protocols in Session.Protocol.
const (
	ProtocolMQTT          = "mqtt"
	ProtocolSocketCluster = "socketcluster"
)

// Session is one connected client, as published at $presence/clients/<id>.
type Session struct {
	// ID is the MQTT client id, or the bridge socket id.
	ID string `json:"id"`
	// User is the authenticated user name; empty for anonymous clients.
	User string `json:"user,omitempty"`
	// Protocol is "mqtt" or "socketcluster".
	Protocol string `json:"protocol"`
	// Transport is tcp, tls or websocket.
	Transport string `json:"transport"`
	// Remote is the client's network address.
	Remote string `json:"remote"`
	// ConnectedAt is when the session started.
	ConnectedAt time.Time `json:"connected_at"`
	// Conn identifies the connection behind the session: a takeover keeps
	// the id and changes Conn.
	Conn string `json:"conn"`
	// Node is the cluster node the session is connected to; empty on a
	// single node.
	Node string `json:"node,omitempty"`
}

// Event is the payload of $presence/connected and $presence/disconnected.
type Event struct {
	Session
	// Event is "connected" or "disconnected".
	Event string `json:"event"`
	// Reason says why a session ended: clean, will, timeout, takeover,
	// kicked or shutdown.
	Reason string `json:"reason,omitempty"`
	// Takeover marks a connected event whose session replaced a live
	// connection with the same id: no disconnected event is sent for the
	// replaced connection, so viewers see no flap.
	Takeover bool `json:"takeover,omitempty"`
	// At is when the change happened.
	At time.Time `json:"at"`
}

// Publisher publishes presence messages. The broker implements it (through
// an adapter in cmd/sockmq); it must accept the reserved $presence topics.
type Publisher interface {
	PublishPresence(topic string, payload []byte, retain bool) error
}

// TopicID encodes a session id as one topic level: "%", "/", "+", "#", NUL
// and other control characters become %XX, everything else is kept.
func TopicID(id string) string {
	const hex = "0123456789ABCDEF"
	if !strings.ContainsFunc(id, needsEscape) {
		return id
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < 0x80 && needsEscape(rune(c)) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return r == '%' || r == '/' || r == '+' || r == '#' || r < 0x20 || r == 0x7f
}

// ClientTopic is the retained document topic of a session id.
func ClientTopic(id string) string { return ClientsPrefix + TopicID(id) }

type change struct {
	join     bool
	update   bool
	s        Session
	reason   string
	takeover bool
	at       time.Time
	flush    chan struct{}
}

// entry is a session with its JSON document (as published).
type entry struct {
	s   Session
	doc []byte
}

// Tracker holds the current sessions and publishes every change.
type Tracker struct {
	pub  Publisher
	log  *slog.Logger
	node string // stamped on every session; set before use

	mu       sync.RWMutex
	sessions map[string]entry // by id
	version  atomic.Uint64    // counts changes to sessions; written under mu

	snapMu sync.Mutex // serialises snapshot builds
	snap   atomic.Pointer[Snapshot]

	qmu    sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	queue  chan change
	done   chan struct{}
}

// New starts a tracker that publishes through pub.
func New(pub Publisher, log *slog.Logger) *Tracker {
	if log == nil {
		log = slog.Default()
	}
	t := &Tracker{
		pub: pub, log: log.With("component", "presence"),
		sessions: make(map[string]entry),
		queue:    make(chan change, 4096),
		done:     make(chan struct{}),
	}
	go t.run()
	return t
}

// SetNode makes every session document and event carry the cluster node
// name. Call it before the first change.
func (t *Tracker) SetNode(name string) { t.node = name }

// enqueue hands c to the tracker goroutine; after Close it is dropped.
func (t *Tracker) enqueue(c change) bool {
	t.qmu.RLock()
	defer t.qmu.RUnlock()
	if t.closed {
		return false
	}
	t.queue <- c
	return true
}

// Connected records a new session. takeover says it replaces a live
// connection with the same id.
func (t *Tracker) Connected(s Session, takeover bool) {
	t.enqueue(change{join: true, s: s, takeover: takeover, at: time.Now()})
}

// Disconnected records the end of the connection conn of session id. An end
// of a connection that was already replaced changes nothing, and neither
// does reason "takeover": the session goes on over the new connection, whose
// Connected follows. An empty conn ends the session whatever its connection.
func (t *Tracker) Disconnected(id, conn, reason string) {
	t.enqueue(change{s: Session{ID: id, Conn: conn}, reason: reason, at: time.Now()})
}

// Update replaces the document of a live session (for example after its
// user logged in) without a connected or disconnected event. It changes
// nothing if the session's connection is not the current one.
func (t *Tracker) Update(s Session) {
	t.enqueue(change{update: true, s: s, at: time.Now()})
}

// Flush waits until every change enqueued so far has been published.
func (t *Tracker) Flush() {
	ch := make(chan struct{})
	if t.enqueue(change{flush: ch}) {
		<-ch
	}
}

// List returns the current sessions, ordered by connect time.
func (t *Tracker) List() []Session {
	return slices.Clone(t.Snapshot().Sessions)
}

// Snapshot returns the current sessions as an immutable [Snapshot]. It is
// built once per change and shared: calls between two changes cost
// nothing.
func (t *Tracker) Snapshot() *Snapshot {
	if sn := t.snap.Load(); sn != nil && sn.version == t.version.Load() {
		return sn
	}
	t.snapMu.Lock()
	defer t.snapMu.Unlock()
	if sn := t.snap.Load(); sn != nil && sn.version == t.version.Load() {
		return sn
	}
	t.mu.RLock()
	v := t.version.Load()
	entries := make([]entry, 0, len(t.sessions))
	for _, e := range t.sessions {
		entries = append(entries, e)
	}
	t.mu.RUnlock()
	sort.Slice(entries, func(i, j int) bool {
		a, b := &entries[i].s, &entries[j].s
		if !a.ConnectedAt.Equal(b.ConnectedAt) {
			return a.ConnectedAt.Before(b.ConnectedAt)
		}
		return a.ID < b.ID
	})
	sn := &Snapshot{version: v, Sessions: make([]Session, len(entries)), Topics: make([]string, len(entries)), docs: make([][]byte, len(entries))}
	size := 2
	for i, e := range entries {
		sn.Sessions[i], sn.Topics[i], sn.docs[i] = e.s, ClientTopic(e.s.ID), e.doc
		size += len(e.doc) + 1
	}
	sn.all = sn.AppendJSON(make([]byte, 0, size), nil)
	t.snap.Store(sn)
	return sn
}

// Snapshot is the list of sessions at one moment, ordered by connect time,
// with each session's JSON document, so that answering "who is here" needs
// no copying, sorting or encoding. It must not be modified.
type Snapshot struct {
	version uint64
	// Sessions are the sessions, ordered by connect time, then id.
	Sessions []Session
	// Topics[i] is ClientTopic(Sessions[i].ID), the topic whose read
	// permission decides who may see the session.
	Topics []string
	docs   [][]byte
	all    []byte
}

// JSON returns the JSON array of every session (the caller must not
// modify it).
func (sn *Snapshot) JSON() []byte { return sn.all }

// AppendJSON appends the JSON array of the sessions i for which keep(i)
// is true (every session when keep is nil) to dst.
func (sn *Snapshot) AppendJSON(dst []byte, keep func(i int) bool) []byte {
	dst = append(dst, '[')
	first := true
	for i, d := range sn.docs {
		if keep != nil && !keep(i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, d...)
	}
	return append(dst, ']')
}

// Close publishes what is queued and stops the tracker. Sessions still
// connected are left as they are: the broker shuts down right after, and
// presence is never persisted.
func (t *Tracker) Close() {
	t.qmu.Lock()
	if !t.closed {
		t.closed = true
		close(t.queue)
	}
	t.qmu.Unlock()
	<-t.done
}

func (t *Tracker) run() {
	defer close(t.done)
	for c := range t.queue {
		switch {
		case c.flush != nil:
			close(c.flush)
		case c.join:
			t.join(c)
		case c.update:
			t.update(c)
		default:
			t.leave(c)
		}
	}
}

func (t *Tracker) join(c change) {
	if c.s.Node == "" {
		c.s.Node = t.node
	}
	doc := t.encodeDoc(c.s)
	t.mu.Lock()
	old, existed := t.sessions[c.s.ID]
	t.sessions[c.s.ID] = entry{s: c.s, doc: doc}
	t.version.Add(1)
	t.mu.Unlock()
	// A second connect for a live id without the broker flagging a takeover
	// (e.g. the replaced connection's end is still queued) is a takeover too.
	takeover := c.takeover || (existed && old.s.Conn != c.s.Conn)
	t.publishDoc(c.s, doc)
	t.publishEvent(ConnectedTopic, Event{Session: c.s, Event: "connected", Takeover: takeover, At: c.at})
}

func (t *Tracker) update(c change) {
	if c.s.Node == "" {
		c.s.Node = t.node
	}
	doc := t.encodeDoc(c.s)
	t.mu.Lock()
	cur, ok := t.sessions[c.s.ID]
	if !ok || cur.s.Conn != c.s.Conn {
		t.mu.Unlock()
		return
	}
	t.sessions[c.s.ID] = entry{s: c.s, doc: doc}
	t.version.Add(1)
	t.mu.Unlock()
	t.publishDoc(c.s, doc)
}

func (t *Tracker) leave(c change) {
	if c.reason == ReasonTakeover {
		return
	}
	t.mu.Lock()
	e, ok := t.sessions[c.s.ID]
	if !ok || (c.s.Conn != "" && e.s.Conn != c.s.Conn) {
		t.mu.Unlock()
		return // unknown, or a connection already replaced by a takeover
	}
	delete(t.sessions, c.s.ID)
	t.version.Add(1)
	t.mu.Unlock()
	if c.reason == ReasonMoved {
		return
	}
	t.publish(ClientTopic(e.s.ID), nil, true)
	t.publishEvent(DisconnectedTopic, Event{Session: e.s, Event: "disconnected", Reason: c.reason, At: c.at})
}

// encodeDoc returns the session's JSON document.
func (t *Tracker) encodeDoc(s Session) []byte {
	b, err := json.Marshal(s)
	if err != nil { // a Session always encodes; keep the list valid JSON anyway
		t.log.Error("encode presence document", "error", err)
		return []byte("null")
	}
	return b
}

func (t *Tracker) publishDoc(s Session, doc []byte) {
	t.publish(ClientTopic(s.ID), doc, true)
}

func (t *Tracker) publishEvent(topic string, ev Event) {
	b, err := json.Marshal(ev)
	if err != nil {
		t.log.Error("encode presence event", "error", err)
		return
	}
	t.publish(topic, b, false)
}

func (t *Tracker) publish(topic string, payload []byte, retain bool) {
	if err := t.pub.PublishPresence(topic, payload, retain); err != nil {
		t.log.Warn("presence publish failed", "topic", topic, "error", err)
	}
}

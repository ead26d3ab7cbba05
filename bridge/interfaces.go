package bridge

// Broker is the part of the MQTT broker the bridge uses. It is declared
// here, by its consumer; cmd/sockmq adapts *broker.Server to it.
type Broker interface {
	// Publish delivers m to every subscriber (MQTT and in-process) and
	// keeps it as the retained message when m.Retain is set, before it
	// returns. The bridge trusts it to apply no ACL: the bridge checks
	// permissions itself.
	Publish(m Message) error
	// Subscribe calls fn for every message published to a topic matching
	// filter until cancel is called. fn runs on the publisher's goroutine:
	// it must only enqueue and never block. Retained messages are not
	// replayed to fn.
	Subscribe(filter string, fn func(Message)) (cancel func(), err error)
	// Retained returns the retained messages whose topics match filter and
	// that id may read. Its cost follows what id may read, not how many
	// messages are retained.
	Retained(id Identity, filter string) []Message
}

// BatchDeferrer is optionally implemented by a [Broker] that handles
// publishes in read batches: the bridge then writes each socket once per
// batch (every frame the batch brought it in one write) instead of once
// per message.
type BatchDeferrer interface {
	// DeferFlush notes f while a read batch is in progress and calls its
	// FlushBatch once the batches in progress end (on the goroutine that
	// ends them); it returns false, and notes nothing, when no batch is in
	// progress.
	DeferFlush(f BatchFlusher) bool
}

// AsyncPublisher is optionally implemented by a [Broker] that can publish
// without making its caller wait for the store: the bridge then answers a
// publish invoke from done, and the socket's reader goes on to the next
// frame meanwhile (publishes keep their order: delivery happens before
// PublishAsync returns; only the store's commit is waited for).
type AsyncPublisher interface {
	// PublishAsync delivers m as Publish does and calls done (never nil)
	// once m and what it caused are stored, or with the error that
	// refused it, on the caller's goroutine or the store's. done must not
	// block.
	PublishAsync(m Message, done func(error))
}

// ReadBatcher is optionally implemented by a [Broker] that can hold its
// subscribers' writes while the bridge handles the frames of one socket
// read: a burst of publishes from one SocketCluster client then reaches
// each subscriber (MQTT connection or socket) in one write, as a burst
// from an MQTT client does. Without it every publish is written at once.
type ReadBatcher interface {
	// BeginBatch starts holding writes; calls may nest and come from any
	// goroutine.
	BeginBatch()
	// EndBatch ends the batch BeginBatch started and writes what was held
	// once no batch is in progress. It never blocks on a subscriber.
	EndBatch()
}

// BatchFlusher is what [BatchDeferrer] calls at the end of a batch.
type BatchFlusher interface {
	// FlushBatch writes what was held back; it never blocks.
	FlushBatch()
}

// Message is an MQTT application message. Its fields mirror the broker's
// message type field for field, so an adapter can convert it directly.
type Message struct {
	// Topic is the concrete topic name.
	Topic string
	// Payload is the body. Handlers must treat it as read-only.
	Payload []byte
	// QoS is the quality of service towards MQTT subscribers.
	QoS byte
	// Retain asks the broker to keep the message for new subscribers.
	Retain bool
	// ContentType is the MQTT 5 content type; empty when unset.
	ContentType string
	// PayloadFormat is the MQTT 5 payload format indicator (1 = UTF-8),
	// meaningful only when HasPayloadFormat is set.
	PayloadFormat byte
	// HasPayloadFormat reports whether the payload format indicator is set.
	HasPayloadFormat bool
	// Origin is the id of the publishing client, set by the broker on
	// delivery; the bridge ignores it when publishing.
	Origin string
}

// Authorizer authenticates users and authorizes topic access. It mirrors
// auth.Service with bridge-owned types (cmd/sockmq adapts it); nil means
// everyone may connect anonymously and read and write everything.
type Authorizer interface {
	// Authenticate checks a username and password (the login procedure).
	Authenticate(username string, password []byte, hasUsername, hasPassword bool) AuthResult
	// Allowed reports whether id may access topic. It is called for every
	// message delivered to a subscription that needs a per-message check,
	// on the publisher's goroutine: it must be fast and must not block.
	Allowed(id Identity, topic string, acc Access) bool
	// Subscription decides whether id may subscribe to filter.
	Subscription(id Identity, filter string) SubDecision
	// UserExists reports whether username may still log in.
	UserExists(username string) bool
	// CredentialStamp returns a value that changes whenever username's
	// credentials do (password change, deletion and re-creation), and
	// ok false when the user may no longer log in. Tokens are bound to it:
	// a token issued under another stamp is refused. It must be fast.
	CredentialStamp(username string) (stamp []byte, ok bool)
	// AnonymousAllowed reports whether sockets that have not logged in may
	// subscribe, publish and invoke procedures.
	AnonymousAllowed() bool
	// OnReload registers fn to run after the rules change; the bridge
	// re-checks every socket then.
	OnReload(fn func())
}

// AuthResult is the outcome of [Authorizer.Authenticate]. The values match
// auth.Result.
type AuthResult uint8

const (
	// NotAuthorized means the user may not log in.
	NotAuthorized AuthResult = iota
	// BadCredentials means the username or password is wrong.
	BadCredentials
	// Allowed means the user may log in.
	Allowed
)

// Identity is who a socket is for authorization. The fields match
// auth.Identity. ClientID is the socket id (what %c in ACL patterns
// matches).
type Identity struct {
	// Username is the logged-in user; meaningful when Anonymous is false.
	Username string
	// ClientID is the socket id.
	ClientID string
	// Anonymous is true until the socket authenticates.
	Anonymous bool
}

// Access is a kind of topic access. The values match auth.Access.
type Access uint8

const (
	// Read is permission to receive messages published to a topic.
	Read Access = 1 << iota
	// Write is permission to publish to a topic.
	Write
)

// SubDecision is the outcome of authorizing a subscription. The values
// match auth.SubDecision.
type SubDecision uint8

const (
	// SubDeny refuses the subscription.
	SubDeny SubDecision = iota
	// SubPartial accepts it; every delivered message is checked with
	// [Authorizer.Allowed] for that socket.
	SubPartial
	// SubAllow accepts it with no per-message check.
	SubAllow
)

// openAuthorizer is used when no Authorizer is given: everything is
// allowed, and any username may log in.
type openAuthorizer struct{}

func (openAuthorizer) Authenticate(string, []byte, bool, bool) AuthResult { return Allowed }
func (openAuthorizer) Allowed(Identity, string, Access) bool              { return true }
func (openAuthorizer) Subscription(Identity, string) SubDecision          { return SubAllow }
func (openAuthorizer) UserExists(string) bool                             { return true }
func (openAuthorizer) CredentialStamp(string) ([]byte, bool)              { return nil, true }
func (openAuthorizer) AnonymousAllowed() bool                             { return true }
func (openAuthorizer) OnReload(func())                                    {}

var _ Authorizer = openAuthorizer{}

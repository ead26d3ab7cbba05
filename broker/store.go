package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"
)

// Buckets of the store. Keys: clients by client id; subscriptions by
// "<client>\x00<filter>"; inflight by "<client>\x00<packet id>"; retained by
// topic.
var (
	bucketClients  = []byte("clients")
	bucketSubs     = []byte("subscriptions")
	bucketInflight = []byte("inflight")
	bucketRetained = []byte("retained")
	bucketMeta     = []byte("meta")
	allBuckets     = [][]byte{bucketClients, bucketSubs, bucketInflight, bucketRetained, bucketMeta}
)

// storeFile is the name of the database file in the data directory.
const storeFile = "sockmq.db"

// storeOp is one write to apply in the writer's next transaction.
type storeOp struct {
	bucket []byte
	key    []byte
	value  []byte // nil deletes key
	prefix bool   // delete every key starting with key
	done   chan struct{}
}

// storeHook persists what mochi needs to restore after a restart: sessions
// that outlive their connection, their subscriptions, their queued QoS 1/2
// messages (with packet ids, which mochi's own bolt hook loses), and retained
// messages. Sessions that end with their connection are never written.
//
// Hook callbacks run on client goroutines; they encode the record and hand it
// to a single writer goroutine that applies everything pending in one
// transaction (group commit), so ordering per key is preserved and a burst
// of messages costs one fsync.
type storeHook struct {
	mqtt.HookBase
	db  *bolt.DB
	log *slog.Logger

	ops      chan storeOp
	stopOnce sync.Once
	done     chan struct{}

	mu      sync.Mutex
	records map[string]*clientRecord // sessions that outlive their connection, by client id
}

func openStore(dir string, sync bool, log *slog.Logger) (*storeHook, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, storeFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: !sync})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: locked by another sockmq process", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise store %s: %w", path, err)
	}
	h := &storeHook{db: db, log: log, ops: make(chan storeOp, 4096), done: make(chan struct{}), records: make(map[string]*clientRecord)}
	go h.writer()
	return h, nil
}

func (h *storeHook) ID() string { return "sockmq-store" }

func (h *storeHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.OnQosPublish, mqtt.OnQosComplete,
		mqtt.OnQosDropped, mqtt.OnClientExpired, mqtt.OnWillSent,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages:
		return true
	}
	return false
}

// writer applies queued operations in batches until the queue is closed.
func (h *storeHook) writer() {
	defer close(h.done)
	batch := make([]storeOp, 0, 256)
	for op := range h.ops {
		batch = append(batch[:0], op)
	drain:
		for len(batch) < cap(batch) {
			select {
			case more, ok := <-h.ops:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		err := h.db.Update(func(tx *bolt.Tx) error {
			for _, op := range batch {
				if op.bucket == nil {
					continue
				}
				b := tx.Bucket(op.bucket)
				var err error
				switch {
				case op.prefix:
					err = deletePrefix(b, op.key)
				case op.value == nil:
					err = b.Delete(op.key)
				default:
					err = b.Put(op.key, op.value)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			h.log.Error("store write failed", "error", err, "ops", len(batch))
		}
		for _, op := range batch {
			if op.done != nil {
				close(op.done)
			}
		}
	}
}

func (h *storeHook) put(bucket, key []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.log.Error("store encode failed", "error", err)
		return
	}
	h.ops <- storeOp{bucket: bucket, key: key, value: b}
}

func (h *storeHook) del(bucket, key []byte) {
	h.ops <- storeOp{bucket: bucket, key: key}
}

// flush waits until everything queued so far is written.
func (h *storeHook) flush() {
	done := make(chan struct{})
	h.ops <- storeOp{done: done}
	<-done
}

// Stop flushes pending writes and closes the database. Safe to call twice.
func (h *storeHook) Stop() error {
	var err error
	h.stopOnce.Do(func() {
		close(h.ops)
		<-h.done
		err = h.db.Close()
	})
	return err
}

// sessionOutlivesConnection reports whether mochi keeps cl's session after
// it disconnects; only those are worth storing.
func sessionOutlivesConnection(cl *mqtt.Client) bool {
	if cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func clientKey(id string) []byte { return []byte(id) }

func subKey(id, filter string) []byte {
	return append(append([]byte(id), 0), filter...)
}

func inflightKey(id string, pid uint16) []byte {
	return strconv.AppendUint(append([]byte(id), 0), uint64(pid), 10)
}

// clientRecord is a stored session: mochi's record plus the time the
// connection ended, so that a pending delayed will can be resumed after a
// restart.
type clientRecord struct {
	storage.Client
	// DisconnectedAt is when the last connection ended (unix milliseconds); zero while
	// connected (after a crash it stays zero).
	DisconnectedAt int64 `json:"disconnected_at_ms,omitempty"`
}

// newRecord builds the record of a session that was just established. It
// runs on the client's goroutine before its read loop, the only time the
// will can be read without racing mochi's delayed-will loop.
func newRecord(cl *mqtt.Client) *clientRecord {
	props := cl.Properties.Props
	return &clientRecord{Client: storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval:     props.SessionExpiryInterval,
			SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod:      props.AuthenticationMethod,
			RequestProblemInfo:        props.RequestProblemInfo,
			RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
			RequestResponseInfo:       props.RequestResponseInfo,
			ReceiveMaximum:            props.ReceiveMaximum,
			TopicAliasMaximum:         props.TopicAliasMaximum,
			User:                      props.User,
			MaximumPacketSize:         props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}}
}

// saveRecord stores a copy of rec (the caller holds h.mu).
func (h *storeHook) saveRecord(rec *clientRecord) {
	h.put(bucketClients, clientKey(rec.ID), *rec)
}

func (h *storeHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if !sessionOutlivesConnection(cl) {
		// A clean start replaces any stored session of the same id.
		h.mu.Lock()
		delete(h.records, cl.ID)
		h.mu.Unlock()
		h.deleteClient(cl.ID)
		return
	}
	rec := newRecord(cl)
	h.mu.Lock()
	h.records[cl.ID] = rec
	h.saveRecord(rec)
	h.mu.Unlock()
}

// OnWillSent clears the stored will once it has been published (at once,
// or after its delay from mochi's event loop).
func (h *storeHook) OnWillSent(cl *mqtt.Client, _ packets.Packet) {
	h.clearWill(cl.ID)
}

func (h *storeHook) clearWill(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rec, ok := h.records[id]; ok && rec.Will.Flag != 0 {
		rec.Will = storage.ClientWill{}
		h.saveRecord(rec)
	}
}

func (h *storeHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if cl.Net.Inline {
		return
	}
	cause := cl.StopCause()
	if errors.Is(cause, packets.ErrSessionTakenOver) {
		return // the session lives on in the new connection, which owns the record
	}
	if expire {
		h.mu.Lock()
		delete(h.records, cl.ID)
		h.mu.Unlock()
		h.deleteClient(cl.ID)
		return
	}
	if !sessionOutlivesConnection(cl) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rec, ok := h.records[cl.ID]
	if !ok {
		return
	}
	// The session expiry may have changed at DISCONNECT.
	rec.Properties.SessionExpiryInterval = cl.Properties.Props.SessionExpiryInterval
	rec.DisconnectedAt = time.Now().UnixMilli()
	// After a clean DISCONNECT the will is discarded; without a delay it was
	// published before this hook. Only a delayed will is still pending.
	if cause == nil || errors.Is(cause, packets.CodeDisconnect) || rec.Will.WillDelayInterval == 0 {
		rec.Will = storage.ClientWill{}
	}
	h.saveRecord(rec)
}

func (h *storeHook) OnClientExpired(cl *mqtt.Client) {
	h.mu.Lock()
	delete(h.records, cl.ID)
	h.mu.Unlock()
	h.deleteClient(cl.ID)
}

// deleteClient removes a session with its subscriptions and queued messages.
// The deletes go through the writer queue, so they also cover records that
// are queued but not yet written.
func (h *storeHook) deleteClient(id string) {
	h.del(bucketClients, clientKey(id))
	prefix := append([]byte(id), 0)
	h.ops <- storeOp{bucket: bucketSubs, key: prefix, prefix: true}
	h.ops <- storeOp{bucket: bucketInflight, key: prefix, prefix: true}
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func (h *storeHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if !sessionOutlivesConnection(cl) {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		h.put(bucketSubs, subKey(cl.ID, f.Filter), storage.Subscription{
			T:                 storage.SubscriptionKey,
			Client:            cl.ID,
			Filter:            f.Filter,
			Identifier:        f.Identifier,
			RetainHandling:    f.RetainHandling,
			Qos:               codes[i],
			RetainAsPublished: f.RetainAsPublished,
			NoLocal:           f.NoLocal,
		})
	}
}

func (h *storeHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if !sessionOutlivesConnection(cl) {
		return
	}
	for _, f := range pk.Filters {
		h.del(bucketSubs, subKey(cl.ID, f.Filter))
	}
}

func toStored(cl string, pk packets.Packet, t string) storage.Message {
	p := pk.Properties
	return storage.Message{
		T:           t,
		Client:      cl,
		Origin:      pk.Origin,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		FixedHeader: pk.FixedHeader,
		Created:     pk.Created,
		PacketID:    pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat:          p.PayloadFormat,
			PayloadFormatFlag:      p.PayloadFormatFlag,
			MessageExpiryInterval:  p.MessageExpiryInterval,
			ContentType:            p.ContentType,
			ResponseTopic:          p.ResponseTopic,
			CorrelationData:        p.CorrelationData,
			SubscriptionIdentifier: p.SubscriptionIdentifier,
			User:                   p.User,
		},
	}
}

// volatileRetained is the prefix of retained topics that describe the
// running process (presence): they are never stored, so no ghost survives a
// restart, even after kill -9.
const volatileRetained = "$presence/"

func (h *storeHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if strings.HasPrefix(pk.TopicName, volatileRetained) {
		return
	}
	if r == -1 || len(pk.Payload) == 0 {
		h.del(bucketRetained, []byte(pk.TopicName))
		return
	}
	h.put(bucketRetained, []byte(pk.TopicName), toStored(cl.ID, pk, storage.RetainedKey))
}

func (h *storeHook) OnRetainedExpired(topic string) { h.del(bucketRetained, []byte(topic)) }

func (h *storeHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	// Inbound QoS 1 acks are completed immediately after this call and
	// never need restoring; sessions that die with their connection are
	// not restored either.
	if pk.FixedHeader.Type == packets.Puback || !sessionOutlivesConnection(cl) {
		return
	}
	h.put(bucketInflight, inflightKey(cl.ID, pk.PacketID), toStored(cl.ID, pk, storage.InflightKey))
}

func (h *storeHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	// A PUBACK the broker built itself (Created set) completes an inbound
	// QoS 1 message that OnQosPublish never stored; deleting its key could
	// remove an outbound message that uses the same packet id. A PUBACK
	// decoded from the client (Created zero) completes a stored message.
	if (pk.FixedHeader.Type == packets.Puback && pk.Created != 0) || !sessionOutlivesConnection(cl) {
		return
	}
	h.del(bucketInflight, inflightKey(cl.ID, pk.PacketID))
}

func (h *storeHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if sessionOutlivesConnection(cl) {
		h.del(bucketInflight, inflightKey(cl.ID, pk.PacketID))
	}
}

func loadAll[T any](h *storeHook, bucket []byte) ([]T, error) {
	var out []T
	err := h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var rec T
			if err := json.Unmarshal(v, &rec); err != nil {
				h.log.Error("store: skipping unreadable record", "bucket", string(bucket), "key", string(k), "error", err)
				return nil
			}
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

// StoredClients loads the stored sessions and keeps their records, so that
// later updates (and resumed wills) start from what was stored.
func (h *storeHook) StoredClients() ([]storage.Client, error) {
	recs, err := loadAll[clientRecord](h, bucketClients)
	if err != nil {
		return nil, err
	}
	out := make([]storage.Client, len(recs))
	h.mu.Lock()
	for i := range recs {
		rec := recs[i]
		h.records[rec.ID] = &rec
		out[i] = rec.Client
	}
	h.mu.Unlock()
	return out, nil
}

// pendingWills returns the restored sessions whose will was not sent yet.
func (h *storeHook) pendingWills() []clientRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []clientRecord
	for _, rec := range h.records {
		if rec.Will.Flag != 0 {
			out = append(out, *rec)
		}
	}
	return out
}

func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	return loadAll[storage.Subscription](h, bucketSubs)
}

func (h *storeHook) StoredInflightMessages() ([]storage.Message, error) {
	return loadAll[storage.Message](h, bucketInflight)
}

func (h *storeHook) StoredRetainedMessages() ([]storage.Message, error) {
	return loadAll[storage.Message](h, bucketRetained)
}

package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the database file in the data directory.
const FileName = "sockmq.db"

// SchemaVersion is the on-disk format this package writes (meta/schema).
// Version 1 was mochi-mqtt's JSON storage records (sockmq before its own
// engine); Open migrates it.
const SchemaVersion = 2

// Buckets of schema 2.
var (
	bMeta     = []byte("meta")
	bSessions = []byte("sessions")
	bSubs     = []byte("subs")   // client \0 filter -> Subscription
	bOut      = []byte("outq")   // client \0 seq(8) -> OutEntry
	bIn2      = []byte("inq2")   // client \0 packet id(2) -> empty: PUBREC sent, PUBREL awaited
	bBodies   = []byte("bodies") // id(8) -> Message
	bRetained = []byte("retain") // topic -> body id(8)
	schemaKey = []byte("schema")
	v2Buckets = [][]byte{bMeta, bSessions, bSubs, bOut, bIn2, bBodies, bRetained}
)

// Options configure a Store.
type Options struct {
	// Dir is the data directory; created if missing.
	Dir string
	// Sync fsyncs every commit (survives power loss). Without it a commit
	// reaches the operating system before waiters are released (survives
	// a killed process, not a power loss).
	Sync bool
	// Log receives errors and the migration report. Nil discards.
	Log *slog.Logger
	// OnCommit, if set, is called after each commit with the number of
	// writes and how long the commit took (for metrics).
	OnCommit func(writes int, took time.Duration)
}

// Waiter is told when the batch it waits for is committed.
type Waiter interface {
	// Committed runs on the store's writer goroutine; it must not block.
	Committed()
}

// WaiterFunc adapts a function to Waiter.
type WaiterFunc func()

// Committed calls f.
func (f WaiterFunc) Committed() { f() }

type waiting struct {
	seq uint64
	w   Waiter
}

// Store is an open database.
type Store struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	open      *batch // collecting writes
	nextBody  uint64
	waiters   []waiting
	closing   bool
	wake      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	committed atomic.Uint64
	failing   atomic.Bool
	lastErr   atomic.Pointer[string]
}

type batch struct {
	seq uint64
	ops []op
	// puts indexes the batch's last put of each queued-entry and body key,
	// so that a delete of a key this batch created cancels both writes
	// (a message acknowledged before its copy was committed costs the disk
	// nothing).
	puts map[string]int
}

// record notes op i as the batch's latest put of key.
func (b *batch) record(key []byte, i int) {
	if b.puts == nil {
		b.puts = make(map[string]int)
	}
	b.puts[string(key)] = i
}

type opKind uint8

const (
	opPut opKind = iota
	opDel
	opDelPrefix
	opNone // cancelled: a put whose key was deleted in the same batch
)

type op struct {
	kind   opKind
	bucket []byte
	key    []byte
	val    []byte
	// created: the put creates the key (nothing was stored under it
	// before this batch), so a delete in the same batch cancels both.
	created bool
}

// Open opens (creating or migrating) the store in opts.Dir and starts its
// writer. Call Load next, before any Write.
func Open(opts Options) (*Store, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", opts.Dir, err)
	}
	path := filepath.Join(opts.Dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        2 * time.Second,
		NoSync:         !opts.Sync,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: locked by another sockmq process", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts, log: opts.Log, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if err := s.prepare(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.open = &batch{seq: 1}
	go s.run()
	return s, nil
}

// prepare creates the buckets and migrates older schemas.
func (s *Store) prepare() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		version := 0
		if meta != nil {
			if v := meta.Get(schemaKey); v != nil {
				if _, err := fmt.Sscan(string(v), &version); err != nil {
					return fmt.Errorf("unreadable schema version %q", v)
				}
			}
		}
		if version > SchemaVersion {
			return fmt.Errorf("the store was written by a newer sockmq (schema %d; this one reads up to %d)", version, SchemaVersion)
		}
		for _, b := range v2Buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if version < SchemaVersion {
			if err := migrateV1(tx, s.log); err != nil {
				return fmt.Errorf("migrate from schema 1: %w", err)
			}
		}
		return tx.Bucket(bMeta).Put(schemaKey, []byte(fmt.Sprint(SchemaVersion)))
	})
}

// Writer appends writes to the open batch. It is only valid inside the
// function given to [Store.Write].
type Writer struct {
	s *Store
	b *batch
}

func (w *Writer) put(bucket, key []byte, e *enc) {
	w.b.ops = append(w.b.ops, op{kind: opPut, bucket: bucket, key: key, val: e.b})
}

func (w *Writer) del(bucket, key []byte) {
	w.b.ops = append(w.b.ops, op{kind: opDel, bucket: bucket, key: key})
}

// PutSession writes a session record.
func (w *Writer) PutSession(s *Session) {
	e := &enc{}
	s.encode(e)
	w.put(bSessions, []byte(s.ClientID), e)
}

// DeleteSession removes a session with its subscriptions, queued messages
// and inbound QoS 2 state. The bodies those queued entries referenced must
// be released with Unref by the caller.
func (w *Writer) DeleteSession(clientID string) {
	w.del(bSessions, []byte(clientID))
	p := clientPrefix(clientID)
	for _, b := range [][]byte{bSubs, bOut, bIn2} {
		w.b.ops = append(w.b.ops, op{kind: opDelPrefix, bucket: b, key: p})
	}
}

// PutSubscription writes a subscription of a persistent session.
func (w *Writer) PutSubscription(clientID string, sub *Subscription) {
	e := &enc{}
	sub.encode(e)
	w.put(bSubs, subKey(clientID, sub.Filter), e)
}

// DeleteSubscription removes a subscription.
func (w *Writer) DeleteSubscription(clientID, filter string) { w.del(bSubs, subKey(clientID, filter)) }

// CreateOut writes a new queued entry. The entry's body must be
// referenced (Ref) first.
func (w *Writer) CreateOut(clientID string, o *OutEntry) {
	e := &enc{}
	o.encode(e)
	w.putIndexed(bOut, outKey(clientID, o.Seq), e.b, true)
}

// PutOut rewrites a queued entry whose state changed.
func (w *Writer) PutOut(clientID string, o *OutEntry) {
	e := &enc{}
	o.encode(e)
	w.putIndexed(bOut, outKey(clientID, o.Seq), e.b, false)
}

// DeleteOut removes a queued entry.
func (w *Writer) DeleteOut(clientID string, seq uint64) { w.delIndexed(bOut, outKey(clientID, seq)) }

// putIndexed appends a put of key, or rewrites this batch's earlier put
// of it (which keeps its "created" mark).
func (w *Writer) putIndexed(bucket, key, val []byte, created bool) {
	if i, ok := w.b.puts[string(key)]; ok && w.b.ops[i].kind == opPut {
		w.b.ops[i].val = val
		return
	}
	w.b.ops = append(w.b.ops, op{kind: opPut, bucket: bucket, key: key, val: val, created: created})
	w.b.record(key, len(w.b.ops)-1)
}

// delIndexed deletes key; if this batch created it, both writes are
// cancelled instead.
func (w *Writer) delIndexed(bucket, key []byte) {
	if i, ok := w.b.puts[string(key)]; ok && w.b.ops[i].kind == opPut {
		created := w.b.ops[i].created
		w.b.ops[i] = op{kind: opNone}
		delete(w.b.puts, string(key))
		if created {
			return
		}
	}
	w.del(bucket, key)
}

// PutInbound2 records that PUBREC was sent for an inbound QoS 2 packet id.
func (w *Writer) PutInbound2(clientID string, pid uint16) {
	w.b.ops = append(w.b.ops, op{kind: opPut, bucket: bIn2, key: inKey(clientID, pid), val: []byte{}})
}

// DeleteInbound2 forgets an inbound QoS 2 packet id (PUBREL received).
func (w *Writer) DeleteInbound2(clientID string, pid uint16) { w.del(bIn2, inKey(clientID, pid)) }

// PutRetained makes body the retained message of its topic. The body must
// be referenced (Ref) by the caller for this use.
func (w *Writer) PutRetained(topic string, bodyID uint64) {
	w.b.ops = append(w.b.ops, op{kind: opPut, bucket: bRetained, key: []byte(topic), val: bodyKey(bodyID)})
}

// DeleteRetained removes a topic's retained message.
func (w *Writer) DeleteRetained(topic string) { w.del(bRetained, []byte(topic)) }

// BodyRef is the store's bookkeeping embedded in an in-memory message:
// its body id and how many stored records reference it. Its fields are
// guarded by the store's lock; only Writer methods touch them.
type BodyRef struct {
	id   uint64
	refs int32
}

// ID returns the body id, 0 while the body was never stored.
func (r *BodyRef) ID() uint64 { return r.id }

// Ref adds a reference to a body, writing the body first if it had none.
// msg is called only when the body must be written.
func (w *Writer) Ref(r *BodyRef, msg func() *Message) uint64 {
	if r.refs == 0 {
		if r.id == 0 {
			w.s.nextBody++
			r.id = w.s.nextBody
		}
		m := msg()
		e := &enc{}
		m.encode(e)
		w.putIndexed(bBodies, bodyKey(r.id), e.b, true)
	}
	r.refs++
	return r.id
}

// Unref drops a reference and deletes the body with its last one.
func (w *Writer) Unref(r *BodyRef) {
	if r.refs <= 0 {
		return
	}
	r.refs--
	if r.refs == 0 {
		w.delIndexed(bBodies, bodyKey(r.id))
	}
}

// Write runs fn under the store's lock to append writes to the open batch
// and returns the batch's sequence number. fn must only call Writer
// methods: no other locks, no blocking.
func (s *Store) Write(fn func(w *Writer)) uint64 {
	s.mu.Lock()
	b := s.open
	n := len(b.ops)
	fn(&Writer{s: s, b: b})
	seq := b.seq
	grew := len(b.ops) > n
	s.mu.Unlock()
	if grew {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return seq
}

// Committed returns the sequence number of the last committed batch.
func (s *Store) Committed() uint64 { return s.committed.Load() }

// Wait arranges for w.Committed to be called once batch seq is committed.
// It returns false, without registering, if it already is (then the caller
// proceeds at once).
func (s *Store) Wait(seq uint64, w Waiter) bool {
	if seq <= s.committed.Load() {
		return false
	}
	s.mu.Lock()
	if seq <= s.committed.Load() {
		s.mu.Unlock()
		return false
	}
	s.waiters = append(s.waiters, waiting{seq: seq, w: w})
	s.mu.Unlock()
	return true
}

// Sync waits until everything written so far is committed.
func (s *Store) Sync() {
	seq := s.Write(func(*Writer) {})
	done := make(chan struct{})
	if s.Wait(seq, WaiterFunc(func() { close(done) })) {
		s.nudge()
		<-done
	}
}

func (s *Store) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Healthy reports whether the last commit succeeded, and the last error.
func (s *Store) Healthy() (bool, string) {
	if !s.failing.Load() {
		return true, ""
	}
	if e := s.lastErr.Load(); e != nil {
		return false, *e
	}
	return false, "store commit failing"
}

// run is the writer goroutine: it commits batches until Close.
func (s *Store) run() {
	defer close(s.done)
	backoff := 10 * time.Millisecond
	for {
		<-s.wake
		for {
			s.mu.Lock()
			b := s.open
			if len(b.ops) == 0 && !s.hasWaitersUpTo(b.seq) {
				closing := s.closing
				s.mu.Unlock()
				if closing {
					return
				}
				break
			}
			s.open = &batch{seq: b.seq + 1, ops: make([]op, 0, max(16, len(b.ops)))}
			s.mu.Unlock()

			for {
				start := time.Now()
				err := s.commit(b)
				if err == nil {
					if n := b.live(); n > 0 && s.opts.OnCommit != nil {
						s.opts.OnCommit(n, time.Since(start))
					}
					if s.failing.Swap(false) {
						s.log.Info("store commits succeed again")
					}
					backoff = 10 * time.Millisecond
					break
				}
				msg := err.Error()
				s.lastErr.Store(&msg)
				if !s.failing.Swap(true) {
					s.log.Error("store commit failed; acknowledgements wait until it succeeds", "error", err, "writes", len(b.ops))
				}
				time.Sleep(backoff)
				backoff = min(backoff*2, 2*time.Second)
			}
			s.committed.Store(b.seq)
			s.release(b.seq)
		}
	}
}

// hasWaitersUpTo reports whether someone waits for a batch <= seq (the
// caller holds s.mu): an empty batch is still "committed" for them.
func (s *Store) hasWaitersUpTo(seq uint64) bool {
	for _, w := range s.waiters {
		if w.seq <= seq {
			return true
		}
	}
	return false
}

func (s *Store) release(seq uint64) {
	s.mu.Lock()
	var ready []waiting
	keep := s.waiters[:0]
	for _, w := range s.waiters {
		if w.seq <= seq {
			ready = append(ready, w)
		} else {
			keep = append(keep, w)
		}
	}
	clear(s.waiters[len(keep):])
	s.waiters = keep
	s.mu.Unlock()
	for _, w := range ready {
		w.w.Committed()
	}
}

// live counts the writes of b that were not cancelled.
func (b *batch) live() int {
	n := 0
	for _, o := range b.ops {
		if o.kind != opNone {
			n++
		}
	}
	return n
}

func (s *Store) commit(b *batch) error {
	if b.live() == 0 {
		return nil // nothing to write: no transaction, no fsync
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, o := range b.ops {
			if o.kind == opNone {
				continue
			}
			bk := tx.Bucket(o.bucket)
			var err error
			switch o.kind {
			case opPut:
				err = bk.Put(o.key, o.val)
			case opDel:
				err = bk.Delete(o.key)
			case opDelPrefix:
				err = deletePrefix(bk, o.key)
			case opNone:
				continue
			}
			if err != nil {
				return fmt.Errorf("%s %q: %w", o.bucket, o.key, err)
			}
		}
		return nil
	})
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func hasPrefix(k, p []byte) bool { return len(k) >= len(p) && string(k[:len(p)]) == string(p) }

// Close commits what is pending, stops the writer and closes the file.
// Waiters of the last batch are released. Safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.nudge()
		<-s.done
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.db.Path() }

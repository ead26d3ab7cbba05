package broker

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
)

// Publish delivers m as the broker itself: it is retained if asked and
// delivered to MQTT and in-process subscribers, and Publish returns once
// everything it caused is stored (the retained copy, copies queued for
// persistent sessions), so that an acknowledgement given after it is a
// promise. Callers are trusted: no ACL is applied here, so callers that
// act for a user (the bridge) check permissions first.
func (s *Server) Publish(m Message) error {
	gate, err := s.publishInproc(m)
	if err != nil || gate == 0 || s.store == nil {
		return err
	}
	// Only a publish that made the store write waits, on a channel made
	// for it: the common case (QoS 0, nothing stored) allocates nothing
	// here.
	done := make(chan struct{}, 1)
	if s.store.Wait(gate, store.WaiterFunc(func() { done <- struct{}{} })) {
		<-done
	}
	return nil
}

// PublishAsync is Publish without waiting: done (if not nil) is called
// once the message and what it caused are stored, on the store's goroutine
// or the caller's; it must not block.
func (s *Server) PublishAsync(m Message, done func(error)) {
	gate, err := s.publishInproc(m)
	if done == nil {
		return
	}
	if err != nil {
		done(err)
		return
	}
	if gate == 0 || s.store == nil || !s.store.Wait(gate, store.WaiterFunc(func() { done(nil) })) {
		done(nil)
	}
}

// publishInproc checks, forwards and routes an in-process publish; gate
// is what the store must commit before the publish is stored (0: nothing).
func (s *Server) publishInproc(m Message) (gate uint64, err error) {
	if err := checkPublish(m); err != nil {
		return 0, err
	}
	if !s.running.Load() {
		return 0, ErrNotRunning
	}
	em := fromMessage(m, internalOrigin, time.Now(), s.cfg.Limits.MaxMessageExpiry)
	if err := s.forward(em, m.QoS > 0 && !topic.Volatile(m.Topic)); err != nil {
		return 0, err
	}
	return s.route(em, nil, 0), nil
}

// Subscribe registers fn for messages on topics matching filter and returns
// a function that removes the subscription. fn runs on the publisher's
// goroutine and must not block: it should copy what it needs and hand it
// to its own goroutine. Retained messages are not replayed to fn; use
// Retained for that. Topics starting with $ are only delivered to filters
// that name the $ level explicitly, as MQTT requires.
func (s *Server) Subscribe(filter string, fn func(Message)) (cancel func(), err error) {
	if err := topic.ValidFilter(filter); err != nil {
		return nil, err
	}
	if _, _, shared := topic.SplitShared(filter); shared {
		return nil, fmt.Errorf("%w: %q: in-process subscriptions cannot be shared", ErrInvalidFilter, filter)
	}
	if fn == nil {
		return nil, errors.New("subscribe: nil handler")
	}
	sub := &subscription{fn: fn, filter: filter, inner: filter, qos: 2}
	s.subs.add(sub)
	var once sync.Once
	return func() { once.Do(func() { s.subs.remove(sub) }) }, nil
}

// Retained returns the retained messages whose topics match filter.
func (s *Server) Retained(filter string) []Message { return s.collectRetained(filter, nil) }

// RetainedFor returns the retained messages matching filter that id may
// read. Its cost follows what id may read: parts of the topic tree the ACL
// does not let id read are not visited.
func (s *Server) RetainedFor(id auth.Identity, filter string) []Message {
	return s.collectRetained(filter, &id)
}

func (s *Server) collectRetained(filter string, id *auth.Identity) []Message {
	if topic.ValidFilter(filter) != nil {
		return nil
	}
	s.syncRetained()
	var scope *auth.ReadScope
	if id != nil {
		scope = s.readScope(*id)
	}
	var out []Message
	now := time.Now().Unix()
	s.retained.match(filter, scope, func(m *msg, check bool) bool {
		if !m.expired(now) && (!check || s.auth == nil || s.auth.Allowed(*id, m.topic, auth.Read)) {
			out = append(out, m.message())
		}
		return true
	})
	return out
}

// retainedExpired removes an expired retained message if it is still the
// topic's retained message.
func (s *Server) retainedExpired(m *msg) {
	s.retained.replaceIf(m.topic, m, func() {
		if s.store != nil && !topic.Volatile(m.topic) {
			s.store.Write(func(w *store.Writer) {
				w.Unref(&m.ref)
				w.DeleteRetained(m.topic)
			})
		}
	})
	s.metrics.retained.Store(int64(s.retained.count()))
}

package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// SessionState is everything stored for one persistent session.
type SessionState struct {
	Session Session
	Subs    []Subscription
	// Out holds the queued and in-flight entries in delivery order.
	Out []OutEntry
	// Inbound2 holds the inbound QoS 2 packet ids awaiting PUBREL.
	Inbound2 []uint16
}

// Retained is a stored retained message.
type Retained struct {
	Topic  string
	BodyID uint64
}

// Snapshot is the whole stored state, as loaded at start-up.
type Snapshot struct {
	Sessions []SessionState
	Retained []Retained
	// Bodies holds every referenced message body by id.
	Bodies map[uint64]*Message
	// Refs counts the stored references to each body; give it to the
	// in-memory message with RestoredRef.
	Refs map[uint64]int32
}

// RestoredRef rebuilds the bookkeeping of a body loaded from the store.
func RestoredRef(id uint64, refs int32) BodyRef { return BodyRef{id: id, refs: refs} }

// Load reads the whole store. Unreadable records are skipped and logged;
// queued entries whose body is missing are dropped; bodies nothing refers
// to are deleted. Call it once, right after Open.
func (s *Store) Load() (*Snapshot, error) {
	snap := &Snapshot{Bodies: make(map[uint64]*Message), Refs: make(map[uint64]int32)}
	var orphans []uint64
	var dangling [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		var maxID uint64
		if err := tx.Bucket(bBodies).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return nil
			}
			id := binary.BigEndian.Uint64(k)
			maxID = max(maxID, id)
			m := &Message{ID: id}
			d := &dec{b: v}
			m.decode(d)
			if d.err != nil {
				s.log.Error("store: skipping unreadable message body", "id", id)
				return nil
			}
			snap.Bodies[id] = m
			return nil
		}); err != nil {
			return err
		}
		s.nextBody = maxID

		byID := make(map[string]*SessionState)
		if err := tx.Bucket(bSessions).ForEach(func(k, v []byte) error {
			st := SessionState{Session: Session{ClientID: string(k)}}
			d := &dec{b: v}
			st.Session.decode(d)
			if d.err != nil {
				s.log.Error("store: skipping unreadable session", "client", string(k))
				return nil
			}
			snap.Sessions = append(snap.Sessions, st)
			return nil
		}); err != nil {
			return err
		}
		for i := range snap.Sessions {
			byID[snap.Sessions[i].Session.ClientID] = &snap.Sessions[i]
		}
		owner := func(k []byte) (*SessionState, []byte) {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return nil, nil
			}
			return byID[string(k[:i])], k[i+1:]
		}
		if err := tx.Bucket(bSubs).ForEach(func(k, v []byte) error {
			st, rest := owner(k)
			if st == nil {
				return nil
			}
			sub := Subscription{Filter: string(rest)}
			d := &dec{b: v}
			sub.decode(d)
			if d.err != nil {
				s.log.Error("store: skipping unreadable subscription", "client", st.Session.ClientID)
				return nil
			}
			st.Subs = append(st.Subs, sub)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bOut).ForEach(func(k, v []byte) error {
			st, rest := owner(k)
			if st == nil || len(rest) != 8 {
				dangling = append(dangling, bytes.Clone(k))
				return nil
			}
			o := OutEntry{Seq: binary.BigEndian.Uint64(rest)}
			d := &dec{b: v}
			o.decode(d)
			if d.err != nil || snap.Bodies[o.MsgID] == nil {
				s.log.Error("store: dropping a queued message whose record or body is unreadable", "client", st.Session.ClientID)
				dangling = append(dangling, bytes.Clone(k))
				return nil
			}
			snap.Refs[o.MsgID]++
			st.Out = append(st.Out, o) // keys sort by seq within a client
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bIn2).ForEach(func(k, v []byte) error {
			st, rest := owner(k)
			if st == nil || len(rest) != 2 {
				return nil
			}
			st.Inbound2 = append(st.Inbound2, binary.BigEndian.Uint16(rest))
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bRetained).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return nil
			}
			id := binary.BigEndian.Uint64(v)
			if snap.Bodies[id] == nil {
				s.log.Error("store: dropping a retained message whose body is missing", "topic", string(k))
				return nil
			}
			snap.Refs[id]++
			snap.Retained = append(snap.Retained, Retained{Topic: string(k), BodyID: id})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load store: %w", err)
	}
	for id := range snap.Bodies {
		if snap.Refs[id] == 0 {
			orphans = append(orphans, id)
		}
	}
	for _, id := range orphans {
		delete(snap.Bodies, id)
	}
	for i := range snap.Sessions {
		out := snap.Sessions[i].Out
		sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	}
	if len(orphans) > 0 || len(dangling) > 0 {
		s.Write(func(w *Writer) {
			for _, id := range orphans {
				w.del(bBodies, bodyKey(id))
			}
			for _, k := range dangling {
				w.del(bOut, k)
			}
		})
		s.Sync()
	}
	return snap, nil
}

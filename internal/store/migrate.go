package store

import (
	"encoding/json"
	"log/slog"
	"sort"

	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"
)

// Schema 1 buckets: mochi-mqtt's storage records as JSON, written by sockmq
// before it had its own engine.
var (
	v1Clients  = []byte("clients")
	v1Subs     = []byte("subscriptions")
	v1Inflight = []byte("inflight")
	v1Retained = []byte("retained")
)

// v1Client is schema 1's session record: mochi's storage.Client plus the
// time the connection ended.
type v1Client struct {
	storage.Client
	DisconnectedAt int64 `json:"disconnected_at_ms,omitempty"`
}

// migrateV1 converts schema 1 buckets, if present, into schema 2 inside tx
// and deletes them. Records that do not decode are skipped and logged.
func migrateV1(tx *bolt.Tx, log *slog.Logger) error {
	if tx.Bucket(v1Clients) == nil && tx.Bucket(v1Retained) == nil && tx.Bucket(v1Inflight) == nil && tx.Bucket(v1Subs) == nil {
		return nil // a new store
	}
	var nextBody uint64
	putBody := func(m *Message) (uint64, error) {
		nextBody++
		e := &enc{}
		m.encode(e)
		return nextBody, tx.Bucket(bBodies).Put(bodyKey(nextBody), e.b)
	}
	var sessions, subs, queued, inbound, retained, skipped int
	known := make(map[string]bool)
	if b := tx.Bucket(v1Clients); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			var c v1Client
			if err := json.Unmarshal(v, &c); err != nil || c.ID == "" {
				skipped++
				return nil
			}
			s := Session{ClientID: c.ID, Owner: string(c.Username), ProtocolVersion: c.ProtocolVersion, DisconnectedAt: c.DisconnectedAt}
			if c.ProtocolVersion == 5 {
				s.Expiry = c.Properties.SessionExpiryInterval
			} else {
				s.Expiry = NeverExpires
			}
			if c.Will.Flag != 0 {
				s.Will = &Will{Delay: c.Will.WillDelayInterval, Message: Message{
					Topic: c.Will.TopicName, Payload: c.Will.Payload, QoS: c.Will.Qos, Retain: c.Will.Retain,
					Origin: c.ID, User: userProps(c.Will.User),
				}}
			}
			e := &enc{}
			s.encode(e)
			known[c.ID] = true
			sessions++
			return tx.Bucket(bSessions).Put([]byte(c.ID), e.b)
		})
		if err != nil {
			return err
		}
	}
	if b := tx.Bucket(v1Subs); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			var s storage.Subscription
			if err := json.Unmarshal(v, &s); err != nil || !known[s.Client] {
				skipped++
				return nil
			}
			sub := Subscription{Filter: s.Filter, QoS: s.Qos, NoLocal: s.NoLocal, RetainAsPublished: s.RetainAsPublished,
				RetainHandling: s.RetainHandling, ID: uint32(s.Identifier)}
			e := &enc{}
			sub.encode(e)
			subs++
			return tx.Bucket(bSubs).Put(subKey(s.Client, s.Filter), e.b)
		})
		if err != nil {
			return err
		}
	}
	if b := tx.Bucket(v1Inflight); b != nil {
		byClient := make(map[string][]storage.Message)
		err := b.ForEach(func(k, v []byte) error {
			var m storage.Message
			if err := json.Unmarshal(v, &m); err != nil || !known[m.Client] {
				skipped++
				return nil
			}
			byClient[m.Client] = append(byClient[m.Client], m)
			return nil
		})
		if err != nil {
			return err
		}
		for client, ms := range byClient {
			sortV1Queue(ms)
			seq := uint64(0)
			for _, m := range ms {
				switch m.FixedHeader.Type {
				case packets.Publish:
					id, err := putBody(v1Message(m))
					if err != nil {
						return err
					}
					seq++
					state := OutQueued
					if m.FixedHeader.Dup {
						state = OutSent
					}
					o := OutEntry{Seq: seq, PacketID: m.PacketID, QoS: m.FixedHeader.Qos, State: state, MsgID: id, Retain: m.FixedHeader.Retain}
					e := &enc{}
					o.encode(e)
					if err := tx.Bucket(bOut).Put(outKey(client, seq), e.b); err != nil {
						return err
					}
					queued++
				case packets.Pubrec:
					if err := tx.Bucket(bIn2).Put(inKey(client, m.PacketID), []byte{}); err != nil {
						return err
					}
					inbound++
				default:
					skipped++
				}
			}
		}
	}
	if b := tx.Bucket(v1Retained); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			var m storage.Message
			if err := json.Unmarshal(v, &m); err != nil || m.TopicName == "" || len(m.Payload) == 0 {
				skipped++
				return nil
			}
			msg := v1Message(m)
			msg.Retain = true
			id, err := putBody(msg)
			if err != nil {
				return err
			}
			retained++
			return tx.Bucket(bRetained).Put([]byte(m.TopicName), bodyKey(id))
		})
		if err != nil {
			return err
		}
	}
	for _, name := range [][]byte{v1Clients, v1Subs, v1Inflight, v1Retained} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	log.Info("store migrated from schema 1 (mochi records) to schema 2",
		"sessions", sessions, "subscriptions", subs, "queued", queued, "inbound_qos2", inbound, "retained", retained, "skipped", skipped)
	return nil
}

func v1Message(m storage.Message) *Message {
	p := m.Properties
	return &Message{
		Topic: m.TopicName, Payload: m.Payload, QoS: m.FixedHeader.Qos, Retain: m.FixedHeader.Retain,
		Created: m.Created * 1000, Origin: m.Origin,
		ContentType: p.ContentType, ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData,
		PayloadFormat: p.PayloadFormat, HasPayloadFormat: p.PayloadFormatFlag, User: userProps(p.User),
		Expiry: v1Expiry(m.Created, p.MessageExpiryInterval),
	}
}

func v1Expiry(created int64, interval uint32) int64 {
	if interval == 0 {
		return 0
	}
	return created + int64(interval)
}

func userProps(in []packets.UserProperty) []UserProperty {
	if len(in) == 0 {
		return nil
	}
	out := make([]UserProperty, len(in))
	for i, u := range in {
		out[i] = UserProperty{Key: u.Key, Value: u.Val}
	}
	return out
}

// sortV1Queue orders a session's schema 1 queue as schema 1 resent it:
// by creation second, then by packet id (which grows per message and
// wraps at 65535, so ids are compared relative to the smallest when the
// spread says a wrap happened).
func sortV1Queue(ms []storage.Message) {
	if len(ms) < 2 {
		return
	}
	minID, maxID := ms[0].PacketID, ms[0].PacketID
	for _, m := range ms {
		minID, maxID = min(minID, m.PacketID), max(maxID, m.PacketID)
	}
	wrapped := maxID-minID > 32768
	key := func(m storage.Message) int {
		id := int(m.PacketID)
		if wrapped && id < 32768 {
			id += 65536
		}
		return id
	}
	sort.SliceStable(ms, func(i, j int) bool {
		if ms[i].Created != ms[j].Created {
			return ms[i].Created < ms[j].Created
		}
		return key(ms[i]) < key(ms[j])
	})
}

package bridge

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/sockmq/sockmq/internal/scproto"
)

// Reserved events (client to server).
const (
	evHandshake       = "#handshake"
	evSubscribe       = "#subscribe"
	evUnsubscribe     = "#unsubscribe"
	evPublish         = "#publish"
	evAuthenticate    = "#authenticate"
	evRemoveAuthToken = "#removeAuthToken"
	evDisconnect      = "#disconnect"
	evSetAuthToken    = "#setAuthToken"
	evKickOut         = "#kickOut"
)

// handleFrame handles one inbound WebSocket message on the reader goroutine.
func (s *socket) handleFrame(data []byte) {
	f := scproto.Decode(data)
	if !s.handshaken {
		if f.Kind != scproto.KindPackets || len(f.Packets) == 0 || f.Packets[0].Event != evHandshake || !f.Packets[0].HasEvent {
			s.h.metrics.handshakesRefused.WithLabelValues("before_handshake").Inc()
			s.h.log.Debug("socket closed: message before handshake", "client", s.id, "remote", s.remote)
			s.close(CloseMessageBeforeHandshake, "Server received a message before the client handshake", false)
			return
		}
		if !s.handshake(&f.Packets[0]) {
			return
		}
		f.Packets = f.Packets[1:]
	}
	now := time.Now()
	s.checkExpiry(now)
	switch f.Kind {
	case scproto.KindEmpty:
		s.proto.CompareAndSwap(protoUnknown, protoV2)
	case scproto.KindPongV1:
		s.proto.CompareAndSwap(protoUnknown, protoV1)
	case scproto.KindPingV1:
		// A client does not ping the server; liveness is all it means.
	case scproto.KindRaw:
		// sc-formatter hands such frames to the application as "raw"
		// messages; the bridge has no use for them.
		s.h.log.Debug("raw message ignored", "client", s.id, "bytes", len(data))
	case scproto.KindPackets:
		for i := range f.Packets {
			if s.closing() {
				return
			}
			p := &f.Packets[i]
			if len(s.replays) > 0 && p.Event != evSubscribe && p.Event != evUnsubscribe {
				s.replayRetained()
			}
			s.handlePacket(p)
		}
	}
	s.replayRetained()
}

// handlePacket dispatches one packet.
func (s *socket) handlePacket(p *scproto.Packet) {
	if !p.HasEvent {
		return // a response (rid) to a server invoke: the bridge sends none that need one
	}
	if s.refusePending(p) {
		return
	}
	switch p.Event {
	case evHandshake:
		s.fail(p, NewError(ErrNameInvalidAction, "the socket has already completed the handshake"))
	case evSubscribe:
		s.onSubscribe(p)
	case evUnsubscribe:
		s.onUnsubscribe(p)
	case evPublish:
		s.onPublish(p)
	case evAuthenticate:
		s.onAuthenticate(p)
	case evRemoveAuthToken:
		// The client's deauthenticate(): a logout.
		s.logout(false, "the socket removed its auth token")
		s.ack(p, nil)
	case evDisconnect:
		// v1 clients announce their close this way; the close frame follows.
	case procLogin:
		s.onLogin(p)
	case procLogout:
		s.onLogout(p)
	default:
		if strings.HasPrefix(p.Event, "#") {
			s.fail(p, Errorf(ErrNameInvalidAction, "%q is a reserved event", p.Event))
			return
		}
		s.onProcedure(p)
	}
}

// ack answers an invoke with data (nil for none); transmits get nothing.
func (s *socket) ack(p *scproto.Packet, data []byte) {
	if p.HasCID {
		s.enqueue(scproto.AppendResponse(nil, p.CID, data))
	}
}

// fail answers an invoke with an error; transmits get nothing.
func (s *socket) fail(p *scproto.Packet, e *Error) {
	if p.HasCID {
		s.enqueue(scproto.AppendErrorResponse(nil, p.CID, e.wire()))
	}
}

// handshake answers #handshake. It returns false when the socket is being
// closed.
func (s *socket) handshake(p *scproto.Packet) bool {
	if !p.HasCID {
		s.h.metrics.handshakesRefused.WithLabelValues("bad_handshake").Inc()
		s.h.log.Debug("socket closed: #handshake without cid", "client", s.id, "remote", s.remote)
		s.close(CloseBadHandshake, "Server rejected handshake from client: #handshake without cid", false)
		return false
	}
	var data struct {
		AuthToken *string `json:"authToken"`
	}
	if len(p.Data) > 0 && p.Data[0] == '{' {
		_ = json.Unmarshal(p.Data, &data)
	}
	var authErr *Error
	var tok *token
	if data.AuthToken != nil && *data.AuthToken != "" {
		tok, authErr = s.useToken(*data.AuthToken)
	}
	reply := make([]byte, 0, 160)
	reply = append(reply, `{"id":`...)
	reply = scproto.AppendString(reply, s.id)
	reply = append(reply, `,"pingTimeout":`...)
	reply = strconv.AppendInt(reply, s.h.cfg.PingTimeout.Milliseconds(), 10)
	reply = append(reply, `,"isAuthenticated":`...)
	if s.identity.Load().Anonymous {
		reply = append(reply, "false"...)
	} else {
		reply = append(reply, "true"...)
	}
	if authErr != nil {
		reply = append(reply, `,"authError":`...)
		reply = authErr.wire().AppendJSON(reply)
	}
	reply = append(reply, '}')
	if authErr != nil {
		s.enqueue(scproto.AppendResponse(nil, p.CID, reply), scproto.AppendEvent(nil, evRemoveAuthToken, nil))
	} else {
		s.enqueue(scproto.AppendResponse(nil, p.CID, reply))
	}
	s.handshaken = true
	now := time.Now()
	s.lastActive.Store(now.UnixNano())
	s.hsDone.Store(true)
	s.h.wheel.schedule(s, now.Add(s.h.cfg.PingInterval))
	s.h.metrics.sockets.Inc()
	s.h.log.Debug("socket opened", "client", s.id, "user", s.session.Username(), "remote", s.remote)
	s.sessionStarted()
	if tok != nil {
		s.recheckToken(tok)
	}
	return true
}

// mayAct returns an error when the socket may not subscribe, publish or
// invoke: anonymous while anonymous access is off.
func (s *socket) mayAct() *Error {
	if s.identity.Load().Anonymous && !s.h.authz.AnonymousAllowed() {
		return NewError(ErrNameAuth, "login required: this server does not accept anonymous sockets; invoke login first")
	}
	return nil
}

func (s *socket) onSubscribe(p *scproto.Packet) {
	refuse := func(e *Error) {
		s.h.metrics.subscribesRefused.Inc()
		s.h.log.Debug("subscribe refused", "client", s.id, "user", s.session.Username(), "error", e.Message)
		s.fail(p, e)
	}
	if !s.subBudget.Take(1, time.Now()) {
		s.h.limits.Hit(limitSubscribeRate, "subscribe refused: bridge.subscribe_rate exceeded",
			"client", s.id, "remote", s.remote, "subscribe_rate", s.h.cfg.SubscribeRate, "subscribe_burst", s.h.cfg.SubscribeBurst)
		refuse(Errorf(ErrNameRateLimit, "too many subscribes (bridge.subscribe_rate %g/s, subscribe_burst %d)", s.h.cfg.SubscribeRate, s.h.cfg.SubscribeBurst))
		return
	}
	channel, ok := parseSubscribe(p.Data)
	if !ok {
		refuse(NewError(ErrNameInvalidAction, "subscribe channel name was malformatted: want {\"channel\": name}"))
		return
	}
	filter, e := s.h.filterFor(channel)
	if e != nil {
		refuse(e)
		return
	}
	if e := s.mayAct(); e != nil {
		refuse(e)
		return
	}
	s.stateMu.Lock()
	if _, dup := s.subs[channel]; dup {
		s.stateMu.Unlock()
		s.ack(p, nil)
		return
	}
	if len(s.subs) >= s.h.cfg.MaxSubscriptions {
		s.stateMu.Unlock()
		refuse(Errorf(ErrNameBroker, "failed to subscribe socket to the %s channel: limit of %d channels per socket (bridge.max_subscriptions) reached", channel, s.h.cfg.MaxSubscriptions))
		return
	}
	id := s.identity.Load()
	d := s.h.authz.Subscription(*id, filter)
	if d == SubDeny {
		s.stateMu.Unlock()
		refuse(Errorf(ErrNameForbidden, "you may not subscribe to %s", channel))
		return
	}
	m, err := s.h.hub.add(s, channel, filter, d != SubAllow)
	if err != nil {
		s.stateMu.Unlock()
		s.h.log.Warn("broker subscribe failed", "client", s.id, "channel", channel, "error", err)
		refuse(Errorf(ErrNameBroker, "failed to subscribe socket to the %s channel", channel))
		return
	}
	s.subs[channel] = m
	s.stateMu.Unlock()
	s.ack(p, nil)
	s.replays = append(s.replays, m)
}

// replayRetained sends the retained messages of the subscriptions made
// since the last call, to this socket only, after their acknowledgements.
// The frame handler calls it before any request other than a subscribe or
// unsubscribe and at the end of each frame: a subscription that has ended
// by then gets nothing (its client would drop the messages anyway), so a
// frame of subscribe/unsubscribe pairs costs no retained lookups.
func (s *socket) replayRetained() {
	pending := s.replays
	s.replays = pending[:0]
	defer clear(pending)
	for _, m := range pending {
		s.stateMu.Lock()
		live := s.subs[m.channel] == m
		s.stateMu.Unlock()
		if !live || s.closing() {
			continue
		}
		channel, filter := m.channel, m.f.filter
		for _, rm := range s.h.broker.Retained(*s.identity.Load(), filter) {
			if m.check.Load() && !s.h.authz.Allowed(*s.identity.Load(), rm.Topic, Read) {
				continue
			}
			if s.enqueue(s.h.publishFrame(channel, m.f.wildcard, &rm)) {
				s.h.metrics.messagesOut.Inc()
			}
		}
	}
}

func (s *socket) onUnsubscribe(p *scproto.Packet) {
	channel, ok := parseSubscribe(p.Data)
	if !ok {
		s.fail(p, NewError(ErrNameInvalidAction, "unsubscribe data must be the channel name"))
		return
	}
	s.stateMu.Lock()
	if m := s.subs[channel]; m != nil {
		delete(s.subs, channel)
		s.h.hub.remove(m)
	}
	s.stateMu.Unlock()
	s.ack(p, nil)
}

func (s *socket) onPublish(p *scproto.Packet) {
	refuse := func(e *Error) {
		s.h.metrics.publishesRefused.Inc()
		s.h.log.Debug("publish refused", "client", s.id, "user", s.session.Username(), "error", e.Message)
		s.fail(p, e)
	}
	channel, data, ok := parsePublish(p.Data)
	if !ok {
		refuse(NewError(ErrNameInvalidAction, "publish data must be {\"channel\": name, \"data\": value}"))
		return
	}
	topic, e := s.h.topicFor(channel)
	if e != nil {
		refuse(e)
		return
	}
	if e := s.mayAct(); e != nil {
		refuse(e)
		return
	}
	if !s.h.authz.Allowed(*s.identity.Load(), topic, Write) {
		refuse(Errorf(ErrNameForbidden, "you may not publish to %s", channel))
		return
	}
	m := toMQTT(data)
	m.Topic = topic
	if p.HasCID {
		m.QoS = 1
	}
	reply := scproto.Packet{CID: p.CID, HasCID: p.HasCID} // p is not kept past this call
	if s.h.async != nil {
		if s.publishing.Load() < maxPendingPublishes {
			// The reader goes on while the store commits: the reply (or
			// the refusal) is sent from done. It must not hold the read
			// batch open for a disk write.
			s.publishing.Add(1)
			s.h.async.PublishAsync(m, func(err error) {
				s.publishing.Add(-1)
				s.publishDone(&reply, channel, err)
			})
			return
		}
		s.h.metrics.publishWaits.Inc()
	}
	s.publishDone(&reply, channel, s.h.broker.Publish(m))
}

// maxPendingPublishes bounds, per socket, the publishes whose store
// commit is awaited at once. Beyond it the reader waits for the store
// (Publish), so a client cannot pile up waiters while the disk stalls.
const maxPendingPublishes = 256

// publishDone answers a publish (reply holds its cid) once the broker has
// it stored (err nil) or refused it. It runs on the reader or on the
// store's goroutine.
func (s *socket) publishDone(reply *scproto.Packet, channel string, err error) {
	if err != nil {
		s.h.log.Warn("broker publish failed", "client", s.id, "channel", channel, "error", err)
		s.h.metrics.publishesRefused.Inc()
		s.fail(reply, Errorf(ErrNameBroker, "failed to publish to the %s channel", channel))
		return
	}
	s.h.metrics.messagesIn.Inc()
	s.ack(reply, nil)
}

func (s *socket) onAuthenticate(p *scproto.Packet) {
	if !p.HasCID {
		s.close(CloseBadHandshake, "Server rejected #authenticate without cid", false)
		return
	}
	raw, _ := scproto.DataString(p.Data)
	t, e := s.useToken(raw)
	if e != nil {
		s.enqueue(scproto.AppendErrorResponse(nil, p.CID, e.wire()), scproto.AppendEvent(nil, evRemoveAuthToken, nil))
		return
	}
	s.ack(p, []byte(`{"isAuthenticated":true,"authError":null}`))
	s.recheckToken(t)
}

func (s *socket) onProcedure(p *scproto.Packet) {
	if !s.invokeBudget.Take(1, time.Now()) {
		s.h.limits.Hit(limitInvokeRate, "procedure call refused: bridge.invoke_rate exceeded",
			"client", s.id, "remote", s.remote, "procedure", p.Event, "invoke_rate", s.h.cfg.InvokeRate, "invoke_burst", s.h.cfg.InvokeBurst)
		s.fail(p, Errorf(ErrNameRateLimit, "too many calls (bridge.invoke_rate %g/s, invoke_burst %d)", s.h.cfg.InvokeRate, s.h.cfg.InvokeBurst))
		return
	}
	if e := s.mayAct(); e != nil {
		s.fail(p, e)
		return
	}
	fn := s.h.procedure(p.Event)
	if fn == nil {
		s.fail(p, Errorf(ErrNameUnknownProcedure, "no procedure named %q is registered on this server", p.Event))
		return
	}
	res, err := fn(s.procContext(), s.session, bytes.Clone(p.Data))
	if err != nil {
		e, named := asWireError(err)
		if !named {
			s.h.log.Warn("procedure failed", "procedure", p.Event, "client", s.id, "error", err)
		}
		s.fail(p, e)
		return
	}
	if !p.HasCID {
		return
	}
	var data []byte
	if raw, ok := res.(json.RawMessage); ok {
		data = raw // the procedure vouches that it is JSON
	} else if res != nil {
		b, err := json.Marshal(res)
		if err != nil {
			s.h.log.Warn("procedure result not encodable", "procedure", p.Event, "error", err)
			s.fail(p, NewError(ErrNameInternal, "the procedure failed"))
			return
		}
		data = b
	}
	s.ack(p, data)
}

package app

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/lwt"
	"github.com/sockmq/sockmq/presence"
)

// socketObserver tells presence and the will registry about bridge
// sockets. On close the will goes first, so that viewers see a session's
// will before the session leaves presence (as for MQTT clients).
type socketObserver struct {
	presence *presence.Tracker
	wills    *lwt.Registry
}

var (
	_ bridge.Observer         = (*socketObserver)(nil)
	_ bridge.IdentityObserver = (*socketObserver)(nil)
)

func socketSession(s *bridge.Session) presence.Session {
	return presence.Session{
		ID: s.ID(), User: s.Username(), Protocol: presence.ProtocolSocketCluster,
		Transport: broker.TransportWebSocket, Remote: s.Remote(), ConnectedAt: s.ConnectedAt(), Conn: s.ID(),
	}
}

func (o *socketObserver) SocketOpened(s *bridge.Session) {
	o.presence.Connected(socketSession(s), false)
}

// SocketIdentityChanged updates the socket's presence document when it logs
// in or out.
func (o *socketObserver) SocketIdentityChanged(s *bridge.Session) {
	o.presence.Update(socketSession(s))
}

func (o *socketObserver) SocketClosed(s *bridge.Session, info bridge.CloseInfo) {
	o.wills.Ended(s.ID(), info.Clean)
	o.presence.Disconnected(s.ID(), s.ID(), socketEndReason(info))
}

// socketEndReason maps a socket's close to the presence reasons shared with
// MQTT sessions.
func socketEndReason(info bridge.CloseInfo) string {
	switch {
	case info.Clean:
		return broker.ReasonClean
	case info.Open: // still connected, but its login expired or was revoked
		return broker.ReasonKicked
	case info.Code == bridge.ClosePongTimeout:
		return broker.ReasonTimeout
	case info.Code == bridge.CloseSlowConsumer:
		return broker.ReasonKicked
	case info.Code == bridge.CloseGoingAway:
		return broker.ReasonShutdown
	default:
		return broker.ReasonWill
	}
}

// identity is how the auth service sees a socket.
func identity(s *bridge.Session) auth.Identity {
	return auth.Identity{Username: s.Username(), ClientID: s.ID(), Anonymous: !s.Authenticated()}
}

func ownerOf(s *bridge.Session) lwt.Owner {
	return lwt.Owner{SessionID: s.ID(), Username: s.Username()}
}

// registerProcedures adds sockmq's own procedures to the bridge:
//
//   - getSessionId: the socket's session id (as in the handshake);
//   - presence: the sessions currently connected (MQTT and bridge), limited
//     to those whose $presence/clients/<id> the caller may read;
//   - setWill {channel, data, retain?, delaySeconds?, qos?} and
//     clearWill {channel?}: the socket's last will (see package lwt).
//
// remote, when not nil, returns the other cluster nodes' sessions, which
// the presence procedure lists too.
func registerProcedures(br *bridge.Handler, tr *presence.Tracker, wills *lwt.Registry, authz authAdapter, remote func() []presence.Doc) {
	br.RegisterProcedure("getSessionId", func(_ context.Context, s *bridge.Session, _ json.RawMessage) (any, error) {
		return s.ID(), nil
	})
	br.RegisterProcedure("presence", func(_ context.Context, s *bridge.Session, _ json.RawMessage) (any, error) {
		sn := tr.Snapshot()
		if remote != nil {
			sn = presence.Merge(sn, remote())
		}
		return presenceReply(sn, authz.s, identity(s)), nil
	})
	br.RegisterProcedure("setWill", func(_ context.Context, s *bridge.Session, data json.RawMessage) (any, error) {
		var req lwt.Request
		if err := json.Unmarshal(data, &req); err != nil {
			return nil, bridge.Errorf("InvalidArgumentsError", "setWill expects {channel, data, retain?, delaySeconds?, qos?}: %v", err)
		}
		return nil, willError(wills.Set(ownerOf(s), req))
	})
	br.RegisterProcedure("clearWill", func(_ context.Context, s *bridge.Session, data json.RawMessage) (any, error) {
		var req struct {
			Channel string `json:"channel"`
		}
		if len(data) > 0 && string(data) != "null" {
			if err := json.Unmarshal(data, &req); err != nil {
				return nil, bridge.Errorf("InvalidArgumentsError", "clearWill expects {channel} or nothing: %v", err)
			}
		}
		wills.Clear(ownerOf(s), req.Channel)
		return nil, nil
	})
}

// presenceReply is the presence procedure's answer: the sessions whose
// $presence/clients/<id> id may read. The ACL decides for the whole list
// at once when it allows or denies every such topic (the shared, encoded
// list or an empty one, whatever the number of sessions); only a partial
// grant checks each session.
func presenceReply(sn *presence.Snapshot, a *auth.Service, id auth.Identity) json.RawMessage {
	switch a.Subscription(id, presence.ClientsFilter) {
	case auth.SubAllow:
		return sn.JSON()
	case auth.SubDeny:
		return json.RawMessage("[]")
	}
	return sn.AppendJSON(nil, func(i int) bool { return a.Allowed(id, sn.Topics[i], auth.Read) })
}

// willError turns an lwt refusal into the SocketCluster error the client
// sees.
func willError(err error) error {
	var e *lwt.Error
	if errors.As(err, &e) {
		return bridge.NewError(e.Name, e.Message)
	}
	return err
}

// willEncoder maps a will like a publish, through the bridge's own mapping.
type willEncoder struct{ br *bridge.Handler }

func (w willEncoder) EncodeWill(channel string, data json.RawMessage) (string, lwt.Encoded, error) {
	m, err := w.br.EncodePublish(channel, data)
	if err != nil {
		var be *bridge.Error
		if errors.As(err, &be) {
			return "", lwt.Encoded{}, errors.New(be.Message)
		}
		return "", lwt.Encoded{}, err
	}
	return m.Topic, lwt.Encoded{Payload: m.Payload, ContentType: m.ContentType, PayloadFormat: m.PayloadFormat, HasPayloadFormat: m.HasPayloadFormat}, nil
}

// willAuth applies the same write permission as a publish, for a user who
// may still log in: the will of a user deleted from the password file is
// neither accepted nor sent.
type willAuth struct{ s *auth.Service }

func (w willAuth) MayWrite(o lwt.Owner, topic string) bool {
	if o.Username != "" && !w.s.UserExists(o.Username) {
		return false
	}
	id := auth.Identity{Username: o.Username, ClientID: o.SessionID, Anonymous: o.Username == ""}
	return !broker.IsReservedTopic(topic) && w.s.Allowed(id, topic, auth.Write)
}

// willPublisher publishes wills through the broker.
type willPublisher struct{ b *broker.Server }

func (w willPublisher) PublishWill(x lwt.Will) error {
	return w.b.Publish(broker.Message{
		Topic: x.Topic, Payload: x.Payload, QoS: x.QoS, Retain: x.Retain,
		ContentType: x.ContentType, PayloadFormat: x.PayloadFormat, HasPayloadFormat: x.HasPayloadFormat,
	})
}

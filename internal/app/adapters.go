package app

import (
	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
)

// brokerAdapter gives the bridge the broker API it declares. The message
// types have the same fields, so conversions copy no payload.
type brokerAdapter struct{ s *broker.Server }

func (a brokerAdapter) Publish(m bridge.Message) error { return a.s.Publish(broker.Message(m)) }

func (a brokerAdapter) Subscribe(filter string, fn func(bridge.Message)) (func(), error) {
	return a.s.Subscribe(filter, func(m broker.Message) { fn(bridge.Message(m)) })
}

// DeferFlush lets the bridge write each socket once per broker read batch.
func (a brokerAdapter) DeferFlush(f bridge.BatchFlusher) bool { return a.s.DeferFlush(f) }

// PublishAsync publishes without waiting for the store; done runs once
// the message is stored.
func (a brokerAdapter) PublishAsync(m bridge.Message, done func(error)) {
	a.s.PublishAsync(broker.Message(m), done)
}

// BeginBatch and EndBatch let the bridge hand the broker the publishes of
// one socket read as one batch.
func (a brokerAdapter) BeginBatch() { a.s.BeginBatch() }

// EndBatch ends the batch BeginBatch started.
func (a brokerAdapter) EndBatch() { a.s.EndBatch() }

func (a brokerAdapter) Retained(id bridge.Identity, filter string) []bridge.Message {
	ms := a.s.RetainedFor(auth.Identity(id), filter)
	out := make([]bridge.Message, len(ms))
	for i, m := range ms {
		out[i] = bridge.Message(m)
	}
	return out
}

// authAdapter gives the bridge the auth.Service API with bridge-owned
// types (same fields and constant values; see adapters_test.go).
type authAdapter struct{ s *auth.Service }

func (a authAdapter) Authenticate(u string, pw []byte, hasU, hasP bool) bridge.AuthResult {
	return bridge.AuthResult(a.s.Authenticate(u, pw, hasU, hasP))
}

func (a authAdapter) Allowed(id bridge.Identity, topic string, acc bridge.Access) bool {
	return a.s.Allowed(auth.Identity(id), topic, auth.Access(acc))
}

func (a authAdapter) Subscription(id bridge.Identity, filter string) bridge.SubDecision {
	return bridge.SubDecision(a.s.Subscription(auth.Identity(id), filter))
}

func (a authAdapter) UserExists(u string) bool { return a.s.UserExists(u) }
func (a authAdapter) CredentialStamp(u string) ([]byte, bool) {
	return a.s.CredentialStamp(u)
}
func (a authAdapter) AnonymousAllowed() bool { return a.s.AnonymousAllowed() }
func (a authAdapter) OnReload(fn func())     { a.s.OnReload(fn) }

var (
	_ bridge.Broker        = brokerAdapter{}
	_ bridge.BatchDeferrer = brokerAdapter{}
	_ bridge.Authorizer    = authAdapter{}
)

// BridgeBroker adapts the broker to the API the bridge declares.
func BridgeBroker(b *broker.Server) bridge.Broker { return brokerAdapter{b} }

// BridgeAuthorizer adapts the auth service to the API the bridge declares.
func BridgeAuthorizer(s *auth.Service) bridge.Authorizer { return authAdapter{s} }

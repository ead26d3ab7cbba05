package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// EndBeforeReadLoop plays, for tests, the race in which mochi skips a
// will: a session with will w is established, then the server stops it
// with cause before its read loop has started, so the loop ends without
// error and mochi's own will path never runs.
func (s *Server) EndBeforeReadLoop(id string, w mqtt.Will, cause packets.Code) {
	cl := s.mq.NewClient(nil, listenerMQTT, id, false)
	cl.Properties.ProtocolVersion = 5
	cl.Properties.Will = w
	s.policy.OnSessionEstablished(cl, packets.Packet{})
	cl.Stop(cause)
	s.policy.OnDisconnect(cl, nil, true)
}

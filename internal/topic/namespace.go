package topic

import "strings"

// The broker's reserved namespaces: a topic is in one when its first level
// is exactly the namespace name.
const (
	// SYS holds broker statistics.
	SYS = "$SYS"
	// Presence holds who is connected: retained documents and events.
	Presence = "$presence"
	// Sockmq is the broker's own namespace; nothing is ever delivered from
	// it to clients.
	Sockmq = "$sockmq"
)

// namespace describes the rules of a reserved namespace.
type namespace struct {
	name string
	// volatile: retained messages describe the running process and are
	// never written to disk, so nothing survives a restart, even kill -9.
	volatile bool
	// hidden: never delivered to clients, whatever their ACL says.
	hidden bool
}

var reserved = []namespace{
	{name: SYS, volatile: true},
	{name: Presence, volatile: true},
	{name: Sockmq, hidden: true},
}

func lookup(t string) (namespace, bool) {
	if t == "" || t[0] != '$' {
		return namespace{}, false
	}
	first, _, _ := NextLevel(t)
	for _, ns := range reserved {
		if first == ns.name {
			return ns, true
		}
	}
	return namespace{}, false
}

// BrokerOnly reports whether topic lies in a namespace only the broker may
// publish to (also as a will): $SYS, $presence and $sockmq.
func BrokerOnly(t string) bool {
	_, ok := lookup(t)
	return ok
}

// Volatile reports whether a retained message on topic must never be
// persisted ($SYS and $presence: they describe the running process).
func Volatile(t string) bool {
	ns, ok := lookup(t)
	return ok && ns.volatile
}

// Hidden reports whether messages on topic are never delivered to clients
// ($sockmq, the broker's own namespace).
func Hidden(t string) bool {
	ns, ok := lookup(t)
	return ok && ns.hidden
}

// ReservedClientIDPrefix starts the client ids sockmq keeps for itself and
// for bridge sessions: no MQTT client may use an id starting with '$', so
// none can pose as the broker or as a bridge socket.
const ReservedClientIDPrefix = "$"

// ReservedClientID reports whether an MQTT client may not use id.
func ReservedClientID(id string) bool { return strings.HasPrefix(id, ReservedClientIDPrefix) }

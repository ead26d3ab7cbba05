// Package ws is the server side of the WebSocket protocol (RFC 6455) for
// connections that are served without a goroutine blocked on each of
// them: [Upgrade] answers the HTTP upgrade and hands back the hijacked
// connection, detached from net/http; [Reader] turns the bytes read from
// it, in whatever pieces they arrive, into messages and control frames;
// the Append functions build the (unmasked) frames a server sends.
//
// Masking, fragmentation, control frames in the middle of a fragmented
// message, the close handshake's frame format and a maximum message size
// (close 1009) are handled. Extensions (permessage-deflate) and
// subprotocols are declined: the upgrade answer names none.
//
// # Concurrency
//
// Upgrade is safe to call from any number of HTTP handlers at once. A
// Reader is owned by one goroutine at a time (its connection's reader);
// the Append functions are pure.
package ws

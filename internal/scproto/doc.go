// Package scproto is the SocketCluster wire codec: it decodes one text
// frame (a JSON object, a JSON array of objects, or one of the non-JSON
// ping/pong strings) into packets and appends outgoing packets to byte
// slices. It does no I/O and keeps no state.
//
// Decoding follows sc-formatter, the codec of socketcluster-client and
// socketcluster-server: "#1" and "#2" are v1 pings and pongs, "" is the v2
// ping and pong, a frame that does not start (after white space) with '{'
// or '[' or that is not valid JSON is "raw", and everything else is one
// packet or a batch of packets.
//
// Encoding is append-style ([AppendPublish], [AppendResponse], ...) so that a
// caller can serialise a frame once into a buffer it owns and share the
// bytes between many sockets.
//
// Concurrency: every function is pure and safe for concurrent use.
package scproto

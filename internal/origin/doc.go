// Package origin decides which web pages may open sockmq's WebSockets.
//
// A browser lets any page it shows open a WebSocket to any address,
// including the user's own machine, and sends the page's origin in the
// Origin header; cookies, network position and a loopback-only listener do
// not stop such a page (cross-site WebSocket hijacking). A [Policy] accepts
// an upgrade that carries an Origin only when that origin is the request's
// own (scheme, host and port of the Host it was sent to) or is listed;
// requests without an Origin come from devices and servers, not from a
// page, and are always accepted.
//
// # Concurrency
//
// A [Policy] is immutable after [Parse] and safe for concurrent use.
package origin

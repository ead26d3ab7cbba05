package bridge

// SignTokenForTest issues a token for user as login does (bound to the
// user's current credentials, with a fresh id), but with the given iat and
// exp (unix seconds; exp 0 leaves the expiry out), so that tests can build
// tokens that are about to expire or have no expiry.
func (h *Handler) SignTokenForTest(user string, iat, exp int64) string {
	stamp, _ := h.authz.CredentialStamp(user)
	return h.signer.encode(tokenClaims{Username: user, IAT: iat, EXP: exp, JTI: newTokenID(), Cred: h.signer.credMark(user, stamp)})
}

// QueuedBytesForTest returns the bytes counted against max_queue_bytes
// over every socket (queued, being written, or the rest of a short
// write).
func (h *Handler) QueuedBytesForTest() int {
	n := 0
	for _, s := range h.snapshot() {
		s.qmu.Lock()
		n += s.queued
		s.qmu.Unlock()
	}
	return n
}

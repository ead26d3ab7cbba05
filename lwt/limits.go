package lwt

import "fmt"

// ErrNameLimit is the error name of a setWill refused by a limit
// (lwt.max_wills_per_socket, lwt.max_bytes_per_user, lwt.max_bytes).
const ErrNameLimit = "LimitExceededError"

// Limits counted in sockmq_limit_refusals_total{limit}.
const (
	limitWillsPerSocket = "lwt_wills_per_socket"
	limitBytesPerUser   = "lwt_bytes_per_user"
	limitBytesTotal     = "lwt_bytes_total"
)

// account is whom will bytes are counted against: a user, or an anonymous
// socket on its own.
type account struct{ user, session string }

func accountOf(o Owner) account {
	if o.Username == "" {
		return account{session: o.SessionID}
	}
	return account{user: o.Username}
}

// refusal says which limit a will would exceed.
type refusal struct {
	limit, key, message string
	value               int
}

// checkLocked decides whether ne may be added to a socket holding n wills,
// replacing old when replacing is set. The caller holds r.mu.
func (r *Registry) checkLocked(ne entry, n int, old entry, replacing bool) *refusal {
	if !replacing && n >= r.cfg.MaxWillsPerSocket {
		return &refusal{limitWillsPerSocket, "lwt.max_wills_per_socket",
			fmt.Sprintf("this socket already holds %d wills, the most allowed (lwt.max_wills_per_socket); clear one first", n), r.cfg.MaxWillsPerSocket}
	}
	acct := accountOf(ne.owner)
	user, total := r.held[acct]+ne.size, r.total+ne.size
	if replacing {
		total -= old.size
		if accountOf(old.owner) == acct {
			user -= old.size
		}
	}
	if user > r.cfg.MaxBytesPerUser {
		return &refusal{limitBytesPerUser, "lwt.max_bytes_per_user",
			fmt.Sprintf("your wills would hold %d bytes, more than the %d allowed per user (lwt.max_bytes_per_user)", user, r.cfg.MaxBytesPerUser), r.cfg.MaxBytesPerUser}
	}
	if total > r.cfg.MaxBytes {
		return &refusal{limitBytesTotal, "lwt.max_bytes",
			fmt.Sprintf("the server holds too many wills (lwt.max_bytes %d bytes); try again later", r.cfg.MaxBytes), r.cfg.MaxBytes}
	}
	return nil
}

func (r *Registry) holdLocked(e entry) {
	r.held[accountOf(e.owner)] += e.size
	r.total += e.size
}

func (r *Registry) releaseLocked(e entry) {
	acct := accountOf(e.owner)
	if n := r.held[acct] - e.size; n > 0 {
		r.held[acct] = n
	} else {
		delete(r.held, acct)
	}
	r.total -= e.size
}

package broker

import (
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/sockmq/sockmq/auth"
)

// pendingWills holds timers for wills restored from the store. mochi keeps
// delayed wills in memory only and never sends the will of a session
// restored from its store; sockmq resumes them:
//
//   - a delayed will pending when the broker stopped (or crashed) is sent
//     when its delay, counted from the disconnect, runs out; after a crash
//     (disconnect time unknown) the delay counts from the restart;
//   - a will without delay of a persistent session whose connection was
//     still open when the broker crashed is sent at restart, since that
//     connection ended without DISCONNECT;
//   - in both cases the will is not sent if the client reconnects first or
//     its session expires, and it is checked against the ACL as any will.
type pendingWills struct {
	mu     sync.Mutex
	timers map[string]*time.Timer
}

func (p *pendingWills) schedule(id string, d time.Duration, fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timers == nil {
		p.timers = make(map[string]*time.Timer)
	}
	p.timers[id] = time.AfterFunc(d, func() {
		p.mu.Lock()
		delete(p.timers, id)
		p.mu.Unlock()
		fn()
	})
}

func (p *pendingWills) cancel(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.timers[id]; ok {
		t.Stop()
		delete(p.timers, id)
	}
}

func (p *pendingWills) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, t := range p.timers {
		t.Stop()
		delete(p.timers, id)
	}
}

// resumeWills schedules the wills of restored sessions; called once the
// store has been read.
func (s *Server) resumeWills() {
	if s.store == nil {
		return
	}
	now := time.Now()
	for _, rec := range s.store.pendingWills() {
		cl, ok := s.mq.Clients.Get(rec.ID)
		if !ok {
			s.store.clearWill(rec.ID) // the session expired while the broker was down
			continue
		}
		delay := time.Duration(rec.Will.WillDelayInterval) * time.Second
		due := now.Add(delay)
		if rec.DisconnectedAt != 0 {
			due = time.UnixMilli(rec.DisconnectedAt).Add(delay)
		}
		s.log.Info("resuming will of a restored session", "client", rec.ID, "topic", rec.Will.TopicName, "due", due.Format(time.RFC3339))
		s.wills.schedule(rec.ID, max(0, time.Until(due)), func() { s.sendRestoredWill(cl, rec) })
	}
}

// sendRestoredWill publishes the will of a restored session if the session
// is still the offline one that was restored.
func (s *Server) sendRestoredWill(cl *mqtt.Client, rec clientRecord) {
	if cur, ok := s.mq.Clients.Get(rec.ID); !ok || cur != cl || !s.running.Load() {
		return // reconnected, expired, or shutting down
	}
	user := string(rec.Username)
	s.sendWill(auth.Identity{Username: user, ClientID: rec.ID, Anonymous: user == ""}, mqtt.Will(rec.Will))
	s.store.clearWill(rec.ID)
}

package broker

import (
	"context"
	"log/slog"
)

// quietHandler demotes mochi's per-connection warnings (which print whole
// packets for every protocol error) to debug level: sockmq logs one concise
// line per ended connection itself.
type quietHandler struct{ slog.Handler }

// noisy lists mochi messages that would otherwise produce a warning storm.
var noisy = map[string]bool{
	"":                                   true, // mochi logs listener errors with an empty message
	"error processing packet":            true,
	"failed publishing packet":           true,
	"client store quota reached":         true,
	"packet ids exhausted":               true,
	"failed to publish retained message": true,
	"added hook":                         true,
	"attached listener":                  true,
	"mochi mqtt starting":                true,
	"mochi mqtt server started":          true,
	"gracefully stopping server":         true,
	"mochi mqtt server stopped":          true,
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && noisy[r.Message] {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	// Let records through to Handle, which decides after demotion.
	return h.Handler.Enabled(ctx, l) || l > slog.LevelDebug
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name)}
}

//go:build go1.21

package llmpool

import (
	"context"
	"log/slog"
)

// SetSlog forwards llmpool's log to l (log/slog, Go 1.21+): ERROR, WARN,
// INFO and DEBUG map to slog's levels, TRACE to slog.LevelDebug-4. Lines
// below l's enabled level are not even formatted by llmpool: the level is
// read from l now (call SetSlog again after changing it). The handler may
// run on any thread, several at once.
func (c *Client) SetSlog(l *slog.Logger) error {
	if l == nil {
		return c.SetLogFunc(LogError, nil)
	}
	ctx := context.Background()
	min := LogError
	for lv := LogTrace; lv >= LogError; lv-- {
		if l.Enabled(ctx, slogLevel(lv)) {
			min = lv
			break
		}
	}
	return c.SetLogFunc(min, func(lv LogLevel, line string) {
		l.Log(ctx, slogLevel(lv), line, "component", "llmpool")
	})
}

func slogLevel(l LogLevel) slog.Level {
	switch l {
	case LogError:
		return slog.LevelError
	case LogWarn:
		return slog.LevelWarn
	case LogInfo:
		return slog.LevelInfo
	case LogDebug:
		return slog.LevelDebug
	}
	return slog.LevelDebug - 4
}

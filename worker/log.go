package worker

import (
	"context"
	"log/slog"
	"os"

	"github.com/handoff-dev/handoff/internal/logging/logline"
)

// EnvLogFormat is the variable in which a handoff supervisor tells its
// workers the format of its log: "json" (a JSON object per line, with
// "ts", "level" and "msg", durations in seconds) or "console" (a line per
// event for people). The worker package logs in it, so that the
// supervisor's stderr, which the workers share, carries one format. It is
// unset when the supervisor's logger is not one of handoff's own (a
// logger given with supervisor.WithLogger or WithSlogHandler).
const EnvLogFormat = "HANDOFF_LOG_FORMAT"

// defaultLogger is the drain's logger when none is given: in the
// supervisor's format (EnvLogFormat) on stderr, else slog.Default().
func defaultLogger() *slog.Logger {
	if l := formatLogger(os.Getenv(EnvLogFormat), os.Stderr); l != nil {
		return l
	}
	return slog.Default()
}

// formatLogger returns a logger writing to f in format, or nil if format
// is not one of the supervisor's. A console line's level is in colour on a
// terminal, as the supervisor's are.
func formatLogger(format string, f *os.File) *slog.Logger {
	if format != logline.JSON && format != logline.Console {
		return nil
	}
	fi, err := f.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return slog.New(logline.NewHandler(f, format, tty && format == logline.Console))
}

// logRun writes one of Run's own lines in the supervisor's format, and
// reports false when the supervisor named none: the caller then writes its
// plain line.
func logRun(level slog.Level, msg string, attrs ...slog.Attr) bool {
	l := formatLogger(os.Getenv(EnvLogFormat), os.Stderr)
	if l == nil {
		return false
	}
	l.LogAttrs(context.Background(), level, msg, attrs...)
	return true
}

// Package logging holds the supervisor's logging plumbing: the logger it
// uses when none is given (info and above to stderr: console lines on a
// terminal, JSON lines otherwise), the handoff CLI's logger for
// -log-format (NewFormat), which the supervisor recognises (Format) to
// have its workers log in the same shape (see logline and
// worker.EnvLogFormat), and a zapcore.Core that forwards to a log/slog
// Handler, so that a program carrying a *slog.Logger can hand it to the
// supervisor.
//
// It is internal: users pick a logger with supervisor.WithLogger or
// supervisor.WithSlogHandler.
package logging

// Package logging holds the supervisor's logging plumbing: the logger it
// uses when none is given (info and above to stderr: console lines on a
// terminal, JSON lines otherwise), and a zapcore.Core that forwards to a
// log/slog Handler, so that a program carrying a *slog.Logger can hand it
// to the supervisor.
//
// It is internal: users pick a logger with supervisor.WithLogger or
// supervisor.WithSlogHandler.
package logging

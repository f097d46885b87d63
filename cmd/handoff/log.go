package main

import (
	"os"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/logging"
)

// newLogger returns the logger for -log-format: console writes a line per
// event for people, its level in colour on a terminal; json writes a JSON
// object per line. Without the flag: console on a terminal, json otherwise.
// The supervisor has its workers log in the same format (see
// worker.EnvLogFormat).
func newLogger(format logFormatFlag, w *os.File) *zap.Logger {
	return logging.NewFormat(string(format), w)
}

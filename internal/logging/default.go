package logging

import (
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Default returns the logger of a supervisor that was given none: info and
// above to stderr.
func Default() *zap.Logger { return New(os.Stderr) }

// New logs info and above to f: for people, in colour, when f is a
// terminal, and as JSON lines otherwise (a file, a pipe, journald).
func New(f *os.File) *zap.Logger {
	if isTerminal(f) {
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(cfg), zapcore.Lock(f), zap.InfoLevel))
	}
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(f), zap.InfoLevel))
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

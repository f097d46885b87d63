package logging

import (
	"os"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/handoff-dev/handoff/internal/logging/logline"
)

// NewFormat returns the logger of handoff's -log-format: logline.Console
// writes a line per event for people, its level in colour on a terminal;
// logline.JSON a JSON object per line (ts in ISO 8601, lowercase levels,
// durations in seconds). "" picks console on a terminal, JSON otherwise.
// Format tells which a logger writes, so that the supervisor can have its
// workers log the same way.
func NewFormat(format string, f *os.File) *zap.Logger {
	tty := isTerminal(f)
	if format == "" {
		format = logline.JSON
		if tty {
			format = logline.Console
		}
	}
	out := zapcore.Lock(f)
	if format == logline.Console {
		return zap.New(newConsoleCore(out, tty))
	}
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.TimeEncoderOfLayout(logline.TimeLayout)
	cfg.EncodeDuration = zapcore.SecondsDurationEncoder
	return zap.New(jsonCore{zapcore.NewCore(zapcore.NewJSONEncoder(cfg), out, zapcore.InfoLevel)})
}

// Format returns the format l writes in (logline.JSON or logline.Console)
// if l came from NewFormat, and "" otherwise.
func Format(l *zap.Logger) string {
	if f, ok := l.Core().(interface{ format() string }); ok {
		return f.format()
	}
	return ""
}

// jsonCore is a JSON core that knows its format.
type jsonCore struct{ zapcore.Core }

func (c jsonCore) With(fields []zapcore.Field) zapcore.Core { return jsonCore{c.Core.With(fields)} }
func (c jsonCore) format() string                           { return logline.JSON }

// consoleCore writes an entry as one console line (see logline): the time,
// the level, the message, then the fields as key=value, quoted where
// needed:
//
//	14:03:07.211 INFO  worker ready                 worker=0 pid=4242 generation=1 after=312.5ms
type consoleCore struct {
	zapcore.LevelEnabler
	out    zapcore.WriteSyncer
	color  bool
	fields []zapcore.Field // from With
}

func newConsoleCore(out zapcore.WriteSyncer, color bool) *consoleCore {
	return &consoleCore{LevelEnabler: zapcore.InfoLevel, out: out, color: color}
}

func (c *consoleCore) format() string { return logline.Console }

func (c *consoleCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = slices.Concat(c.fields, fields)
	return &clone
}

func (c *consoleCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *consoleCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	all := slices.Concat(c.fields, fields)
	b := logline.AppendConsoleHead(nil, e.Time, Level(e.Level), e.Level.String(), e.Message, c.color, len(all) > 0)
	for _, f := range all {
		b = appendField(b, f)
	}
	if e.Stack != "" {
		b = append(b, '\n')
		b = append(b, e.Stack...)
	}
	b = append(b, '\n')
	_, err := c.out.Write(b)
	if e.Level > zapcore.ErrorLevel {
		c.out.Sync()
	}
	return err
}

func (c *consoleCore) Sync() error { return c.out.Sync() }

// appendField appends f as " key=value" (several, for a field that
// expands).
func appendField(b []byte, f zapcore.Field) []byte {
	enc := zapcore.NewMapObjectEncoder()
	f.AddTo(enc)
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		if !strings.HasSuffix(k, "Verbose") { // zap.Error's stack-laden twin
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b = logline.AppendConsoleField(b, k, enc.Fields[k])
	}
	return b
}

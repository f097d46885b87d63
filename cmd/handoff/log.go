package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger returns the logger for -log-format: console writes a line per
// event for people, its level in colour on a terminal; json writes a JSON
// object per line. Without the flag: console on a terminal, json otherwise.
func newLogger(format logFormatFlag, w *os.File) *zap.Logger {
	fi, err := w.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	if format == "" {
		format = "json"
		if tty {
			format = "console"
		}
	}
	out := zapcore.Lock(w)
	if format == "console" {
		return zap.New(&consoleCore{LevelEnabler: zapcore.InfoLevel, out: out, color: tty})
	}
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(cfg), out, zapcore.InfoLevel))
}

// consoleCore writes an entry as one line: the time, the level, the
// message, then the fields as key=value, quoted where needed:
//
//	14:03:07.211 INFO  worker ready                 worker=0 pid=4242 generation=1 after=312.5ms
type consoleCore struct {
	zapcore.LevelEnabler
	out    zapcore.WriteSyncer
	color  bool
	fields []zapcore.Field // from With
}

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
	var b bytes.Buffer
	b.WriteString(e.Time.Format("15:04:05.000"))
	b.WriteByte(' ')
	b.WriteString(c.level(e.Level))
	b.WriteByte(' ')
	b.WriteString(e.Message)
	if all := slices.Concat(c.fields, fields); len(all) > 0 {
		if n := len(e.Message); n < 28 {
			b.WriteString(strings.Repeat(" ", 28-n))
		}
		for _, f := range all {
			appendField(&b, f)
		}
	}
	if e.Stack != "" {
		b.WriteByte('\n')
		b.WriteString(e.Stack)
	}
	b.WriteByte('\n')
	_, err := c.out.Write(b.Bytes())
	if e.Level > zapcore.ErrorLevel {
		c.out.Sync()
	}
	return err
}

func (c *consoleCore) Sync() error { return c.out.Sync() }

// level is the entry's level, five wide, in colour on a terminal.
func (c *consoleCore) level(l zapcore.Level) string {
	s := fmt.Sprintf("%-5s", l.CapitalString())
	if !c.color {
		return s
	}
	colour := "34" // blue
	switch {
	case l == zapcore.DebugLevel:
		colour = "35" // magenta
	case l == zapcore.WarnLevel:
		colour = "33" // yellow
	case l >= zapcore.ErrorLevel:
		colour = "31" // red
	}
	return "\x1b[" + colour + "m" + s + "\x1b[0m"
}

// appendField writes f as " key=value" (several, for a field that expands).
func appendField(b *bytes.Buffer, f zapcore.Field) {
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
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(formatValue(enc.Fields[k]))
	}
}

// formatValue writes a field's value; a string that would be ambiguous in
// key=value form is quoted.
func formatValue(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case time.Duration:
		if v >= time.Second {
			v = v.Round(time.Millisecond)
		} else {
			v = v.Round(time.Microsecond)
		}
		return v.String()
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case []any, map[string]any:
		j, err := json.Marshal(v)
		if err != nil {
			return strconv.Quote(fmt.Sprint(v))
		}
		return string(j)
	default:
		s = fmt.Sprint(v)
	}
	if s == "" || strings.IndexFunc(s, func(r rune) bool {
		return r == '"' || r == '=' || r == '\\' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

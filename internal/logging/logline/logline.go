// Package logline writes handoff's two log line shapes, so that a
// supervisor and its workers write one stream in one format.
//
// JSON: one object per line, {"level":"info","ts":"2006-01-02T15:04:05.000Z0700","msg":…}
// then the fields; levels lowercase, durations in seconds (a number).
//
// Console: the time, the level five wide and in capitals (in colour on a
// terminal), the message, then the fields as key=value, quoted where
// needed:
//
//	14:03:07.211 INFO  worker ready                 worker=0 pid=4242 after=312.5ms
//
// The supervisor writes them through zap (internal/logging), a worker
// through the slog.Handler here; this package does not import zap, so that
// a worker does not link it.
package logline

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The formats, as -log-format and worker.EnvLogFormat name them.
const (
	JSON    = "json"
	Console = "console"
)

// TimeLayout is the time of a JSON line (zap's ISO8601TimeEncoder), and
// ConsoleTimeLayout that of a console line.
const (
	TimeLayout        = "2006-01-02T15:04:05.000Z0700"
	ConsoleTimeLayout = "15:04:05.000"
)

// msgWidth is the width the message of a console line is padded to when
// fields follow it.
const msgWidth = 28

// LevelName is a level as JSON lines spell it: debug, info, warn, error.
func LevelName(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}

// AppendConsoleHead appends the start of a console line: its time, the
// level name in capitals five wide (in colour, by severity, with color),
// and the message, padded when fields follow.
func AppendConsoleHead(b []byte, t time.Time, l slog.Level, name, msg string, color, fields bool) []byte {
	b = t.AppendFormat(b, ConsoleTimeLayout)
	b = append(b, ' ')
	if color {
		colour := "34" // blue
		switch {
		case l < slog.LevelInfo:
			colour = "35" // magenta
		case l >= slog.LevelError:
			colour = "31" // red
		case l >= slog.LevelWarn:
			colour = "33" // yellow
		}
		b = append(b, "\x1b["+colour+"m"...)
	}
	b = fmt.Appendf(b, "%-5s", strings.ToUpper(name))
	if color {
		b = append(b, "\x1b[0m"...)
	}
	b = append(b, ' ')
	b = append(b, msg...)
	if fields && len(msg) < msgWidth {
		b = append(b, strings.Repeat(" ", msgWidth-len(msg))...)
	}
	return b
}

// AppendConsoleField appends " key=value" to a console line: a duration as
// Go writes it (rounded to the millisecond from a second up, else to the
// microsecond), a time in RFC 3339, a slice or map as JSON, a string
// quoted where it would be ambiguous.
func AppendConsoleField(b []byte, key string, v any) []byte {
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	return append(b, consoleValue(v)...)
}

func consoleValue(v any) string {
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
	case error:
		s = v.Error()
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

// AppendJSONString appends s as a JSON string, escaped as zap escapes it.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = fmt.Appendf(b, `\u%04x`, c)
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// AppendSeconds appends d as a JSON number of seconds.
func AppendSeconds(b []byte, d time.Duration) []byte {
	return appendFloat(b, d.Seconds())
}

// appendFloat appends f as zap does: NaN and the infinities as strings.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"+Inf"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Inf"`...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

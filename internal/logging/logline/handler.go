package logline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
)

// NewHandler returns a slog.Handler that writes records at info and above
// to w, one line each, in format (JSON or Console; anything else is
// JSON), with the keys, time, level spelling and durations of the
// supervisor's lines. With color, a console line's level is in colour.
// A group (WithGroup, slog.Group) is a nested object in JSON and dotted
// keys in console lines.
func NewHandler(w io.Writer, format string, color bool) slog.Handler {
	return &handler{mu: new(sync.Mutex), w: w, console: format == Console, color: color}
}

type handler struct {
	mu      *sync.Mutex // one write at a time, shared by the clones
	w       io.Writer
	console bool
	color   bool
	attrs   []slog.Attr // from WithAttrs, nested in their groups
	groups  []string    // from WithGroup: where later attributes go
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = slices.Clip(h.attrs)
	for _, a := range nest(h.groups, as) {
		c.attrs = appendMerged(c.attrs, a)
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(slices.Clip(h.groups), name)
	return &c
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	var rec []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		rec = append(rec, a)
		return true
	})
	attrs := slices.Clip(h.attrs)
	for _, a := range nest(h.groups, rec) {
		attrs = appendMerged(attrs, a)
	}
	var b []byte
	if h.console {
		b = AppendConsoleHead(b, r.Time, r.Level, LevelName(r.Level), r.Message, h.color, len(attrs) > 0)
		b = appendConsoleAttrs(b, "", attrs)
	} else {
		b = append(b, `{"level":`...)
		b = AppendJSONString(b, LevelName(r.Level))
		b = append(b, `,"ts":`...)
		b = AppendJSONString(b, r.Time.Format(TimeLayout))
		b = append(b, `,"msg":`...)
		b = AppendJSONString(b, r.Message)
		b = appendJSONAttrs(b, attrs)
		b = append(b, '}')
	}
	b = append(b, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b)
	return err
}

// nest puts as in the groups, innermost last.
func nest(groups []string, as []slog.Attr) []slog.Attr {
	for i := len(groups) - 1; i >= 0 && len(as) > 0; i-- {
		as = []slog.Attr{{Key: groups[i], Value: slog.GroupValue(as...)}}
	}
	return as
}

// appendMerged appends a, merged into the last attribute when both are
// groups of the same key, so that a group is written once.
func appendMerged(attrs []slog.Attr, a slog.Attr) []slog.Attr {
	if n := len(attrs); n > 0 && a.Key != "" && attrs[n-1].Key == a.Key &&
		attrs[n-1].Value.Kind() == slog.KindGroup && a.Value.Kind() == slog.KindGroup {
		inner := slices.Clip(attrs[n-1].Value.Group())
		for _, g := range a.Value.Group() {
			inner = appendMerged(inner, g)
		}
		return append(attrs[:n-1:n-1], slog.Attr{Key: a.Key, Value: slog.GroupValue(inner...)})
	}
	return append(attrs, a)
}

// appendJSONAttrs appends ,"key":value for each attribute, as slog's
// rules have it: an empty attribute is left out, an empty group too, and
// the attributes of a group without a key are inlined.
func appendJSONAttrs(b []byte, attrs []slog.Attr) []byte {
	for _, a := range attrs {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			g := v.Group()
			if len(g) == 0 {
				continue
			}
			if a.Key == "" {
				b = appendJSONAttrs(b, g)
				continue
			}
			b = append(b, ',')
			b = AppendJSONString(b, a.Key)
			b = append(b, ":{"...)
			n := len(b)
			b = appendJSONAttrs(b, g)
			if len(b) > n {
				b = append(b[:n], b[n+1:]...) // the first comma
			}
			b = append(b, '}')
			continue
		}
		if a.Key == "" && v.Any() == nil {
			continue
		}
		b = append(b, ',')
		b = AppendJSONString(b, a.Key)
		b = append(b, ':')
		b = appendJSONValue(b, v)
	}
	return b
}

func appendJSONValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return AppendJSONString(b, v.String())
	case slog.KindInt64:
		return fmt.Append(b, v.Int64())
	case slog.KindUint64:
		return fmt.Append(b, v.Uint64())
	case slog.KindFloat64:
		return appendFloat(b, v.Float64())
	case slog.KindBool:
		return fmt.Append(b, v.Bool())
	case slog.KindDuration:
		return AppendSeconds(b, v.Duration())
	case slog.KindTime:
		return AppendJSONString(b, v.Time().Format(TimeLayout))
	}
	switch x := v.Any().(type) {
	case nil:
		return append(b, "null"...)
	case error:
		var m json.Marshaler
		if !errors.As(x, &m) {
			return AppendJSONString(b, x.Error())
		}
	case json.Marshaler:
	case fmt.Stringer:
		return AppendJSONString(b, x.String())
	}
	j, err := json.Marshal(v.Any())
	if err != nil {
		return AppendJSONString(b, fmt.Sprint(v.Any()))
	}
	return append(b, j...)
}

// appendConsoleAttrs appends " key=value" for each attribute; the keys of
// a group's attributes are prefixed with the group's key and a dot.
func appendConsoleAttrs(b []byte, prefix string, attrs []slog.Attr) []byte {
	for _, a := range attrs {
		v := a.Value.Resolve()
		key := prefix + a.Key
		if v.Kind() == slog.KindGroup {
			if a.Key != "" {
				key += "."
			}
			b = appendConsoleAttrs(b, key, v.Group())
			continue
		}
		if a.Key == "" && v.Any() == nil {
			continue
		}
		b = AppendConsoleField(b, key, consoleAny(v))
	}
	return b
}

// consoleAny is v as AppendConsoleField takes it.
func consoleAny(v slog.Value) any {
	switch v.Kind() {
	case slog.KindAny:
		if s, ok := v.Any().(fmt.Stringer); ok {
			if _, isErr := s.(error); !isErr {
				return s.String()
			}
		}
		return v.Any()
	case slog.KindDuration:
		return v.Duration()
	case slog.KindTime:
		return v.Time()
	}
	return v.Any()
}

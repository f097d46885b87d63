package logging

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap/zapcore"
)

// SlogCore returns a zapcore.Core that hands every entry to h as a
// slog.Record: zap's levels map onto slog's (see Level), fields become
// attributes in their order, and a zap.Namespace opens a group that holds
// the fields after it. h decides what is enabled and how records are
// written; Sync does nothing.
func SlogCore(h slog.Handler) zapcore.Core { return &slogCore{h: h} }

type slogCore struct{ h slog.Handler }

// Level maps a zap level onto slog's scale, which spaces its levels by 4:
// debug -4, info 0, warn 4, error 8; DPanic, Panic and Fatal go above
// error (12, 16, 20).
func Level(l zapcore.Level) slog.Level { return slog.Level(l) * 4 }

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), Level(l))
}

// With adds fields to every later entry; a namespace among them opens a
// group on the handler, so that the fields of later entries go in it.
func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	h := c.h
	var attrs []slog.Attr
	for _, f := range fields {
		if f.Type == zapcore.NamespaceType {
			if len(attrs) > 0 {
				h = h.WithAttrs(attrs)
				attrs = nil
			}
			h = h.WithGroup(f.Key)
			continue
		}
		attrs = append(attrs, toAttrs(f)...)
	}
	if len(attrs) > 0 {
		h = h.WithAttrs(attrs)
	}
	return &slogCore{h: h}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, Level(e.Level), e.Message, e.Caller.PC)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(attrsOf(fields)...)
	if e.Stack != "" {
		r.AddAttrs(slog.String("stack", e.Stack))
	}
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

// attrsOf converts fields in order; a namespace becomes a group holding the
// fields after it.
func attrsOf(fields []zapcore.Field) []slog.Attr {
	var attrs []slog.Attr
	for i, f := range fields {
		if f.Type == zapcore.NamespaceType {
			return append(attrs, slog.Attr{Key: f.Key, Value: slog.GroupValue(attrsOf(fields[i+1:])...)})
		}
		attrs = append(attrs, toAttrs(f)...)
	}
	return attrs
}

// toAttrs converts one field through zap's own encoding, so that every
// field type (errors, durations, stringers, objects, arrays) keeps the value
// zap would log: usually one attribute; an error with a verbose form gives
// two, and a skipped field none.
func toAttrs(f zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	f.AddTo(enc)
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}

package main

import (
	"bytes"
	"errors"
	"regexp"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestConsoleLog: one line per event, fields as key=value, quoted where a
// value would be ambiguous.
func TestConsoleLog(t *testing.T) {
	var buf bytes.Buffer
	log := zap.New(&consoleCore{LevelEnabler: zapcore.InfoLevel, out: zapcore.AddSync(&buf)}).With(zap.Int("worker", 0))
	log.Info("worker ready", zap.Int("pid", 4242), zap.Duration("after", 312456789*time.Nanosecond))
	log.Warn("worker died; restarting", zap.String("status", "exit status 1"), zap.Error(errors.New(`bad "x"`)),
		zap.Strings("names", []string{"web", "admin"}), zap.String("empty", ""))
	log.Debug("not shown")
	want := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} INFO  worker ready {17}worker=0 pid=4242 after=312\.457ms
\d\d:\d\d:\d\d\.\d{3} WARN  worker died; restarting {6}worker=0 status="exit status 1" error="bad \\"x\\"" names=\["web","admin"\] empty=""
$`)
	if !want.Match(buf.Bytes()) {
		t.Errorf("console log:\n%s", buf.String())
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                  "0s",
		850 * time.Millisecond:        "850ms",
		12345 * time.Millisecond:      "12.3s",
		5*time.Minute + 3*time.Second: "5m03s",
		2*time.Hour + 5*time.Minute:   "2h05m",
		76*time.Hour + 30*time.Minute: "3d04h",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

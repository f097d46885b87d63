package main

import (
	"testing"
	"time"
)

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

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLineLog: readers each see every line in order, from the start or
// from when they began; a reader waits for lines and learns of the end.
func TestLineLog(t *testing.T) {
	l := newLineLog()
	l.push("a")
	late := l.cursorEnd()
	var wg sync.WaitGroup
	got := make([][]string, 3)
	for i := range got {
		wg.Go(func() {
			c := l.cursor()
			for {
				ln, err := c.line(t.Context())
				if errors.Is(err, errLogClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				got[i] = append(got[i], ln.text)
			}
		})
	}
	for i := range 100 {
		l.push(fmt.Sprint(i))
	}
	l.close()
	wg.Wait()
	want := "a 0 1 2"
	for i, g := range got {
		if len(g) != 101 || !strings.HasPrefix(strings.Join(g, " "), want) || g[100] != "99" {
			t.Errorf("reader %d saw %d lines: %.40v", i, len(g), g)
		}
	}
	ln, err := late.find(t.Context(), func(ln logLine) (bool, error) { return ln.text == "42", nil })
	if err != nil || ln.text != "42" {
		t.Errorf("find from the end: %q, %v", ln.text, err)
	}
	if _, err := late.find(t.Context(), func(logLine) (bool, error) { return false, nil }); !errors.Is(err, errLogClosed) {
		t.Errorf("find past the end: %v", err)
	}
	boom := errors.New("boom")
	if _, err := l.cursor().find(t.Context(), func(logLine) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("match error: %v", err)
	}
	if tail := l.tail(2); strings.Join(tail, " ") != "98 99" {
		t.Errorf("tail(2) = %q", tail)
	}
}

// TestCursorContext: a reader waiting on an open log returns when its
// context ends.
func TestCursorContext(t *testing.T) {
	l := newLineLog()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.cursor().line(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the context's error", err)
	}
}

package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// errLogClosed is returned once a log has ended and every line was read.
var errLogClosed = errors.New("the log ended (every process holding it exited)")

// logLine is one line of a subject's output and when the harness read it.
type logLine struct {
	at   time.Time
	text string
}

// lineLog keeps every line a subject wrote, for any number of readers,
// each with its own cursor. Pushing never blocks, so the reading goroutine
// never stalls the subject's logging.
type lineLog struct {
	mu     sync.Mutex
	lines  []logLine
	closed bool
	wake   chan struct{} // closed and replaced on every push and at close
}

func newLineLog() *lineLog { return &lineLog{wake: make(chan struct{})} }

func (l *lineLog) push(text string) {
	l.mu.Lock()
	l.lines = append(l.lines, logLine{time.Now(), text})
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.wake)
	}
}

// cursor returns a reader from the first line.
func (l *lineLog) cursor() *cursor { return &cursor{log: l} }

// cursorEnd returns a reader of the lines read from now on.
func (l *lineLog) cursorEnd() *cursor {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &cursor{log: l, next: len(l.lines)}
}

// tail returns the last n lines.
func (l *lineLog) tail(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ln := range l.lines[max(len(l.lines)-n, 0):] {
		out = append(out, ln.text)
	}
	return out
}

// cursor reads a lineLog in order.
type cursor struct {
	log  *lineLog
	next int
}

// line returns the next line, waiting for it until ctx is done or the log
// ends.
func (c *cursor) line(ctx context.Context) (logLine, error) {
	for {
		c.log.mu.Lock()
		if c.next < len(c.log.lines) {
			ln := c.log.lines[c.next]
			c.next++
			c.log.mu.Unlock()
			return ln, nil
		}
		closed, wake := c.log.closed, c.log.wake
		c.log.mu.Unlock()
		if closed {
			return logLine{}, errLogClosed
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return logLine{}, context.Cause(ctx)
		}
	}
}

// find returns the first line from the cursor on for which match says
// done; match's error ends the search.
func (c *cursor) find(ctx context.Context, match func(logLine) (bool, error)) (logLine, error) {
	for {
		ln, err := c.line(ctx)
		if err != nil {
			return ln, err
		}
		done, err := match(ln)
		if err != nil || done {
			return ln, err
		}
	}
}

// since returns the lines read at or after t.
func (l *lineLog) since(t time.Time) []logLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.lines, t, func(ln logLine, t time.Time) int { return ln.at.Compare(t) })
	return slices.Clone(l.lines[i:])
}

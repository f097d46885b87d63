package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"
)

// Messages of the example's JSON log that the harness follows.
const (
	msgListening    = "listening"
	msgWorkerReady  = "worker ready"
	msgRollComplete = "roll complete"
	msgRollFailed   = "roll failed" // a prefix: the message goes on
	msgExiting      = "exiting"
)

// event is one line of the supervisor's JSON log (zap's production
// format), or a line that is not JSON, kept in Raw only.
type event struct {
	Msg        string  `json:"msg"`
	Level      string  `json:"level"`
	Addr       string  `json:"addr"`
	Worker     int     `json:"worker"`
	Pid        int     `json:"pid"`
	Generation uint64  `json:"generation"`
	Took       float64 `json:"took"` // seconds
	Error      string  `json:"error"`
	Raw        string  `json:"-"`
}

// parseEvent parses one log line; a line that is not a JSON object yields
// an event with only Raw set.
func parseEvent(line string) event {
	var ev event
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		ev = event{}
	}
	ev.Raw = line
	return ev
}

// took returns the supervisor's own measure of a roll.
func (ev event) took() time.Duration { return time.Duration(ev.Took * float64(time.Second)) }

// rollFailed says whether the event reports a failed roll.
func (ev event) rollFailed() bool { return strings.HasPrefix(ev.Msg, msgRollFailed) }

// errLogClosed is returned once the log has ended and every event was read.
var errLogClosed = errors.New("the supervisor's log ended (every process holding it exited)")

// tailLines is how many log lines are kept to explain a failure.
const tailLines = 40

// eventQueue passes log events from the reading goroutine to the harness
// without ever blocking the reader: a blocked reader would fill the pipe and
// stall the supervisor's logging.
type eventQueue struct {
	wake chan struct{} // size 1: something was pushed or the queue closed

	mu     sync.Mutex
	items  []event
	tail   []string
	closed bool
}

func newEventQueue() *eventQueue { return &eventQueue{wake: make(chan struct{}, 1)} }

func (q *eventQueue) push(ev event) {
	q.mu.Lock()
	q.items = append(q.items, ev)
	if len(q.tail) == tailLines {
		q.tail = q.tail[1:]
	}
	q.tail = append(q.tail, ev.Raw)
	q.mu.Unlock()
	q.ring()
}

func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.ring()
}

func (q *eventQueue) ring() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next returns the next event, waiting for one until ctx is done or the
// log ends.
func (q *eventQueue) next(ctx context.Context) (event, error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			ev := q.items[0]
			q.items = q.items[1:]
			q.mu.Unlock()
			return ev, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return event{}, errLogClosed
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return event{}, ctx.Err()
		}
	}
}

// lastLines returns the last lines of the log, oldest first.
func (q *eventQueue) lastLines() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.tail...)
}

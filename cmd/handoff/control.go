package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The control protocol, spoken over the control socket: the client sends one
// request line, the server answers with one line of JSON and closes the
// connection.
//
//	request  = command [SP argument] LF       at most maxRequestLine bytes
//	command  = "status" / "reload" / "upgrade" / "scale"
//	response = JSON object LF                 {"ok":true,"status":{…}}
//	                                          {"ok":false,"error":"…"}
//
// Words are separated by spaces or tabs; a CR before the LF is ignored, and
// so is a missing LF at the end of the stream. Only printable ASCII is
// accepted. scale takes the number of workers, 0 (pause) to maxWorkers, in
// decimal, or a change of it, +N or -N.
// Every successful answer carries the status after the command: reload
// answers when the roll is over, scale once the new slots are started or
// the removed ones retiring. A successful upgrade does not answer: the
// connection ends when the supervisor execs the new program.
const (
	maxRequestLine = 256
	maxWorkers     = 4096
)

// op is a control command.
type op int

const (
	opStatus op = iota + 1
	opReload
	opUpgrade
	opScale
)

func (o op) String() string {
	switch o {
	case opStatus:
		return "status"
	case opReload:
		return "reload"
	case opUpgrade:
		return "upgrade"
	case opScale:
		return "scale"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// parseOp returns the command named name.
func parseOp(name string) (op, bool) {
	for o := opStatus; o <= opScale; o++ {
		if o.String() == name {
			return o, true
		}
	}
	return 0, false
}

// command is a parsed request.
type command struct {
	op       op
	workers  int  // scale only: the number, or with relative the change
	relative bool // scale +N or scale -N
}

// String returns the request line for c, without the LF.
func (c command) String() string {
	if c.op == opScale {
		if c.relative {
			return fmt.Sprintf("scale %+d", c.workers)
		}
		return fmt.Sprintf("scale %d", c.workers)
	}
	return c.op.String()
}

// parseCommand parses one request line, with or without its line end. The
// error says what is wrong, quoting at most a short piece of the input.
func parseCommand(line []byte) (command, error) {
	s := string(line)
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	if len(s) > maxRequestLine {
		return command{}, fmt.Errorf("request longer than %d bytes", maxRequestLine)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 || c > 0x7e) && c != '\t' {
			return command{}, fmt.Errorf("request holds byte %#02x at offset %d: only printable ASCII is allowed", c, i)
		}
	}
	words := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(words) == 0 {
		return command{}, errors.New("empty request: want status, reload, upgrade or scale N")
	}
	o, ok := parseOp(words[0])
	if !ok {
		return command{}, fmt.Errorf("unknown command %s: want status, reload, upgrade or scale N", quoteShort(words[0]))
	}
	c := command{op: o}
	if o == opScale {
		if len(words) != 2 {
			return command{}, errors.New("scale takes one argument, the number of workers")
		}
		n, rel, err := parseScale(words[1])
		if err != nil {
			return command{}, fmt.Errorf("scale: %w", err)
		}
		c.workers, c.relative = n, rel
		return c, nil
	}
	if len(words) > 1 {
		return command{}, fmt.Errorf("%s takes no argument, got %s", c.op, quoteShort(words[1]))
	}
	return c, nil
}

// parseScale parses the argument of scale: a number of workers, 0 (pause)
// to maxWorkers, or a change, +N or -N, of at most maxWorkers.
func parseScale(s string) (n int, relative bool, err error) {
	digits := s
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		digits, relative = s[1:], true
	}
	if digits == "" || len(digits) > 9 || strings.Trim(digits, "0123456789") != "" {
		return 0, false, fmt.Errorf("number of workers %s: want a whole number N (0 pauses), or +N or -N to add or remove workers", quoteShort(s))
	}
	n, _ = strconv.Atoi(digits) // at most 9 digits: no overflow
	if n > maxWorkers {
		return 0, false, fmt.Errorf("number of workers %s is out of range: want 0 to %d", quoteShort(s), maxWorkers)
	}
	if relative && s[0] == '-' {
		n = -n
	}
	return n, relative, nil
}

// quoteShort quotes s for an error message, cut to a length that cannot
// flood a log.
func quoteShort(s string) string {
	const max = 32
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

// response is the server's answer.
type response struct {
	OK     bool          `json:"ok"`
	Error  string        `json:"error,omitempty"`
	Status *statusReport `json:"status,omitempty"`
}

// statusReport is the state of a running handoff, as status prints it.
type statusReport struct {
	Pid     int    `json:"pid"`
	Version string `json:"version"`
	// Started is when the process started; ExecTime when the program now
	// running started: later than Started after an upgrade in place.
	// Upgraded tells that this program was started by an upgrade in place.
	Started  time.Time `json:"started"`
	ExecTime time.Time `json:"exec_time"`
	Upgraded bool      `json:"upgraded"`
	Command  []string  `json:"command"`

	Generation uint64 `json:"generation"`
	Rolling    bool   `json:"rolling"`
	// Retiring counts workers asked to exit that have not yet.
	Retiring int            `json:"retiring"`
	Workers  []workerReport `json:"workers"`

	// The counters, as supervisor.Stats has them (and /metrics shows them):
	// since the process started, across upgrades in place.
	Starts        uint64        `json:"starts"`
	Restarts      uint64        `json:"restarts"`
	StartFailures uint64        `json:"start_failures"`
	Exits         exitsReport   `json:"exits"`
	Rolls         rollsReport   `json:"rolls"`
	Upgrades      upgradeReport `json:"upgrades"`
	NotifyDropped notifyReport  `json:"notify_dropped"`
	// Handover counts the connections draining workers handed over.
	Handover handoverReport `json:"handover"`

	// GenerationsAlive counts the distinct generations of live workers.
	GenerationsAlive int `json:"generations_alive"`
	// RetiringWorkers are the workers asked to exit, with how long they
	// have been draining.
	RetiringWorkers []workerReport `json:"retiring_workers"`
	// Slots are the N places workers run in: backoff, restarts, last exit.
	Slots []slotReport `json:"slots"`
	// Sockets are the listening sockets with their accept queues.
	Sockets  []socketReport `json:"sockets"`
	LastRoll *rollReport    `json:"last_roll,omitempty"`
	// MetricsAddr is where -metrics serves; "" without it.
	MetricsAddr string `json:"metrics_addr,omitempty"`
}

type slotReport struct {
	Slot     int  `json:"slot"`
	Failures int  `json:"failures"`
	Restarts int  `json:"restarts"`
	Vetoed   bool `json:"vetoed,omitempty"`
	// NextRetry is when an empty slot in backoff starts again; null if it
	// is not waiting.
	NextRetry   *time.Time  `json:"next_retry,omitempty"`
	RetryInSecs float64     `json:"retry_in_seconds,omitempty"`
	LastExit    *exitReport `json:"last_exit,omitempty"`
	// FailingSince is when the start failures in a row began; null
	// without one. CrashLooping: 3 or more of them.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	CrashLooping bool       `json:"crash_looping,omitempty"`
}

type exitReport struct {
	Pid        int       `json:"pid"`
	Generation uint64    `json:"generation"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"time"`
}

type socketReport struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// Known: the kernel reported the queue (TCP and unix sockets on Linux).
	Known       bool   `json:"known"`
	QueueLength uint32 `json:"queue_length"`
	QueueMax    uint32 `json:"queue_max"`
	// NotServed: the queue sat non-empty without going down while workers
	// were ready; since NotServedSince.
	NotServed      bool       `json:"not_served"`
	NotServedSince *time.Time `json:"not_served_since,omitempty"`
}

type rollReport struct {
	Generation  uint64    `json:"generation"`
	Result      string    `json:"result"`
	Error       string    `json:"error,omitempty"`
	Started     time.Time `json:"started"`
	TookSeconds float64   `json:"took_seconds"`
}

// exitsReport counts exits by reason: the supervisor asked for the
// retired ones; the watchdog, recycled ones and the others nobody did.
type exitsReport struct {
	Clean    uint64 `json:"clean"`
	Failed   uint64 `json:"failed"`
	Signal   uint64 `json:"signal"`
	Watchdog uint64 `json:"watchdog"`
	Recycled uint64 `json:"recycled"`
	Retired  uint64 `json:"retired"`
}

type rollsReport struct {
	Completed  uint64 `json:"completed"`
	Failed     uint64 `json:"failed"`
	RolledBack uint64 `json:"rolled_back"`
}

type handoverReport struct {
	Handed   uint64 `json:"handed"`
	Returned uint64 `json:"returned"`
	Refused  uint64 `json:"refused"`
	Failed   uint64 `json:"failed"`
	InFlight uint64 `json:"in_flight"`
}

type upgradeReport struct {
	Completed uint64 `json:"completed"`
	Failed    uint64 `json:"failed"`
}

type notifyReport struct {
	Foreign       uint64 `json:"foreign"`
	NoCredentials uint64 `json:"no_credentials"`
	Oversized     uint64 `json:"oversized"`
	Malformed     uint64 `json:"malformed"`
	FdsClosed     uint64 `json:"fds_closed"`
	ReadErrors    uint64 `json:"read_errors"`
}

type workerReport struct {
	Slot          int       `json:"slot"`
	Pid           int       `json:"pid"`
	Generation    uint64    `json:"generation"`
	State         string    `json:"state"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Restarts      int       `json:"restarts"`
	// Status is the last STATUS= the worker sent to its notify socket.
	Status string `json:"status,omitempty"`
	// DrainingSeconds is how long a retiring worker has been draining.
	DrainingSeconds float64 `json:"draining_seconds,omitempty"`
}

// closestCommand returns the command that word is most likely a typo of: at
// most two edits away (an adjacent swap counts as one), and fewer edits than
// half its length. "" if none is.
func closestCommand(word string) string {
	best, bestDist := "", 3
	for o := opStatus; o <= opScale; o++ {
		if d := editDistance(word, o.String()); d < bestDist && 2*d < len(word) {
			best, bestDist = o.String(), d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and swaps of adjacent bytes.
func editDistance(a, b string) int {
	if len(a) > maxRequestLine || len(b) > maxRequestLine {
		return maxRequestLine
	}
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/mdtable"
)

// The two ways the reconnects scenario's clients talk to a subject.
const (
	rcPlain = "plain" // raw HTTP/1.1 straight to the subject
	rcTLS   = "tls"   // the same, through the harness's 1:1 TLS tunnel
)

var reconnectModes = []string{rcPlain, rcTLS}

// reconnectWatchPeriod is how often the reconnects scenario reads
// /proc/net/tcp. A read costs tens of milliseconds of kernel time on a
// host with thousands of sockets, so not more often: a connection closed
// between two reads is still seen at the end, in TIME_WAIT.
const reconnectWatchPeriod = 250 * time.Millisecond

// kernelCount is what a connWatch saw.
type kernelCount struct {
	Conns   int           `json:"connections"`   // distinct client ports seen connected to the target
	Inodes  int           `json:"client_inodes"` // distinct client socket inodes seen open
	Reads   int           `json:"reads"`
	Slowest time.Duration `json:"slowest_read"`
	Err     string        `json:"error,omitempty"`
	// Mode tls: the tunnel's connections the kernel was not seen to hold,
	// and the longest-lived of them.
	Missed        int           `json:"missed,omitempty"`
	MissedLongest time.Duration `json:"missed_longest,omitempty"`
}

// reconnectRun is one subject's run of the reconnects scenario: clients
// that redial only when their connection ended, through restarts.
type reconnectRun struct {
	Subject        string        `json:"subject"`
	Mode           string        `json:"mode"`
	Round          int           `json:"round"`
	Clients        int           `json:"clients"`
	Restarts       int           `json:"restarts"`      // signals sent
	Seen           int           `json:"seen_complete"` // restarts seen complete before the next was due
	FailedRestarts []string      `json:"failed_restarts,omitempty"`
	Every          time.Duration `json:"every"`
	Requests       int           `json:"requests"`
	Failed         int           `json:"failed"`
	FirstFailure   string        `json:"first_failure,omitempty"`
	Dials          int           `json:"dials"`     // as the clients counted them, start included
	Connected      int           `json:"connected"` // TCP connections made: the clients' (plain) or the tunnel's to the subject (tls)
	Kernel         kernelCount   `json:"kernel"`

	// TLS only: handshakes and their CPU time from the first restart on
	// (the server side is the tunnel's, standing for the subject's TLS).
	Handshakes    int           `json:"handshakes_after_first_restart,omitempty"`
	HandshakesAll int           `json:"handshakes,omitempty"`
	ServerCPU     time.Duration `json:"server_handshake_cpu,omitempty"`
	ClientCPU     time.Duration `json:"client_handshake_cpu,omitempty"`
	UpstreamDials int           `json:"upstream_dials,omitempty"`
	TLSParams     string        `json:"tls,omitempty"`

	Leftover int    `json:"leftover_processes,omitempty"`
	Err      string `json:"error,omitempty"`
}

// perRestart is (dials − clients) ÷ restarts: the connections each
// restart cost, beyond the one every client needs.
func (r *reconnectRun) perRestart() float64 {
	if r.Restarts == 0 || r.Dials == 0 {
		return math.NaN()
	}
	return float64(r.Dials-r.Clients) / float64(r.Restarts)
}

// watched is the count the kernel's should equal: the clients' dials, or
// in mode tls the tunnel's connections to the subject.
func (r *reconnectRun) watched() int {
	if r.Mode == rcTLS {
		return r.UpstreamDials
	}
	return r.Dials
}

// agrees says whether the kernel saw the connections that were counted.
func (r *reconnectRun) agrees() bool { return r.Kernel.Err == "" && r.Kernel.Conns == r.watched() }

func ratef(f float64) string {
	if math.IsNaN(f) {
		return "–"
	}
	return fmt.Sprintf("%.2f", f)
}

// cpuPer renders d ÷ n.
func cpuPer(d time.Duration, n int) string {
	if n == 0 {
		return "–"
	}
	return mdtable.Ms(d / time.Duration(n))
}

func writeReconnects(p printer, runs []*reconnectRun, cfg config) {
	p("## Reconnects per restart, and the TLS handshakes they cost\n\n")
	p("%d raw keep-alive HTTP/1.1 clients (`bench/load`, GET and POST alternating, back to back) against a fresh subject; after %v, %d restarts one every %v, each sent only once the previous one was seen complete and %v more had passed (handoff: SIGHUP, a rolling restart, about 1 s with its canary's accept window; tableflip: SIGHUP; gunicorn: SIGHUP; nginx: `nginx -s reload`), then %v more. A client never retries a request and never looks for a FIN: it dials again only when its connection ended (a `Connection: close` answer, or a failure). Reconnects per restart = (dials − clients) ÷ restarts: 0 when every connection outlives every restart, about 1 per client when each restart closes each connection once.\n\n",
		cfg.clients, cfg.warmup, cfg.reconnects, cfg.every, cfg.every/4, cfg.tail)
	p("\"kernel\" is the harness's own count of the connections, from /proc/net/tcp (read every %v and once at the end): every client socket inode seen connected to the subject's address, plus every client port seen only closing or closed, at either end (a connection closed between two reads still sits in TIME_WAIT at the end). In mode `plain` it should equal the clients' dials; in mode `tls` it counts the tunnel's plaintext connections to the subject, one per client connection, and should equal the tunnel's upstream dials (a TLS client that closes with the tunnel's close_notify unread resets its connection, which leaves no TIME_WAIT to count). ≠ marks a disagreement, explained below the tables.\n\n",
		reconnectWatchPeriod)
	t := mdtable.New("subject", "mode", "round", "restarts seen complete", "requests", "failed", "dials", "kernel",
		"reconnects per restart").Right(2, 3, 4, 5, 6, 7, 8)
	for _, r := range runs {
		kernel := fmt.Sprint(r.Kernel.Conns)
		if !r.agrees() {
			kernel += " ≠"
		}
		t.Row(r.Subject, r.Mode, fmt.Sprint(r.Round), fmt.Sprintf("%d of %d", r.Seen, r.Restarts), mdtable.Int(r.Requests),
			mdtable.Int(r.Failed), mdtable.Int(r.Dials), kernel, ratef(r.perRestart()))
	}
	table(p, t)

	var tlsRuns []*reconnectRun
	for _, r := range runs {
		if r.Mode == rcTLS {
			tlsRuns = append(tlsRuns, r)
		}
	}
	if len(tlsRuns) > 0 {
		params := ""
		for _, r := range tlsRuns {
			if r.TLSParams != "" {
				params = r.TLSParams
				break
			}
		}
		p("**TLS.** In mode `tls` the clients talk TLS to a tunnel in the harness's process, which holds one plaintext connection to the subject per client connection and ends each with the other: a connection the subject closes costs its client a new TCP connection and a full handshake (%s; an ECDSA P-256 certificate the client verifies; no session resumption), one it keeps costs nothing. Handshake CPU is each side's thread CPU time during the handshake (a locked OS thread, CLOCK_THREAD_CPUTIME_ID), counted for handshakes from the first restart on; \"server\" is the tunnel's side, what a TLS-terminating server pays.\n\n",
			strings.TrimSuffix(params, "."))
		t := mdtable.New("subject", "round", "handshakes after the first restart", "per restart", "server CPU per restart",
			"client CPU per restart", "server CPU per handshake", "upstream dials").Right(1, 2, 3, 4, 5, 6, 7)
		for _, r := range tlsRuns {
			per, srv, cli := "–", "–", "–"
			if r.Restarts > 0 {
				per = ratef(float64(r.Handshakes) / float64(r.Restarts))
				srv, cli = cpuPer(r.ServerCPU, r.Restarts), cpuPer(r.ClientCPU, r.Restarts)
			}
			t.Row(r.Subject, fmt.Sprint(r.Round), mdtable.Int(r.Handshakes), per, srv, cli, cpuPer(r.ServerCPU, r.Handshakes),
				mdtable.Int(r.UpstreamDials))
		}
		table(p, t)
	}

	var notes []string
	for _, r := range runs {
		who := fmt.Sprintf("%s (%s, round %d)", r.Subject, r.Mode, r.Round)
		if !r.agrees() {
			counted := "the clients counted"
			if r.Mode == rcTLS {
				counted = "the tunnel counted"
			}
			why := fmt.Sprintf("%s %d dials (%d connected), the kernel showed %d connections", counted, r.watched(), r.Connected, r.Kernel.Conns)
			if r.Kernel.Missed > 0 {
				why += fmt.Sprintf("; the %d it missed each lived %v or less (closed with a reset between two reads, which leaves no TIME_WAIT)",
					r.Kernel.Missed, r.Kernel.MissedLongest.Round(time.Millisecond))
			}
			if r.Kernel.Err != "" {
				why = r.Kernel.Err
			}
			notes = append(notes, fmt.Sprintf("%s: %s (%d reads of /proc/net/tcp, the slowest %v).", who, why,
				r.Kernel.Reads, r.Kernel.Slowest.Round(time.Millisecond)))
		}
		if r.Failed > 0 && r.FirstFailure != "" {
			notes = append(notes, fmt.Sprintf("%s: first failed request: %s.", who, r.FirstFailure))
		}
		if len(r.FailedRestarts) > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d restarts reported failed, first: %s.", who, len(r.FailedRestarts), r.FailedRestarts[0]))
		}
		if r.Err != "" {
			notes = append(notes, fmt.Sprintf("%s: error: %s.", who, strings.ReplaceAll(r.Err, "\n", " ")))
		}
	}
	for _, n := range notes {
		p("- %s\n", mdtable.Escape(n))
	}
	if len(notes) > 0 {
		p("\n")
	}
}

// writeReconnectsJSON writes the runs, and how they were made, as JSON.
func writeReconnectsJSON(w io.Writer, res *results) error {
	runs := slices.Clone(res.reconnects)
	doc := struct {
		Command string          `json:"command"`
		Began   time.Time       `json:"began"`
		Commit  string          `json:"commit,omitempty"`
		Flags   string          `json:"flags"`
		Machine string          `json:"machine"`
		Runs    []*reconnectRun `json:"runs"`
	}{res.command, res.began.UTC(), res.commit, res.cfg.flags(),
		fmt.Sprintf("%d × %s, Linux %s, %s", res.machine.nproc, res.machine.cpu, res.machine.kernel, res.machine.goVer), runs}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

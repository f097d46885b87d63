//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStatusForAPerson: after a SIGKILLed worker and a roll, with a client
// holding a connection to an old worker, status shows the slots' last
// exits, the retiring worker with its drain time, the socket's queue, the
// last roll and the metrics address, in text and in JSON; status -watch
// refreshes until interrupted.
func TestStatusForAPerson(t *testing.T) {
	checkFds(t)
	pidfile := t.TempDir() + "/handoff.pid"
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-metrics", "tcp://127.0.0.1:0", "-pidfile", pidfile, "-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "listening")
	addr := l.Addr
	_, from = p.waitReady(from, 2, 1)
	st := statusJSON(t, "-pidfile", pidfile)
	victim := st.Workers[0]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, from = p.waitLog(from, "the replacement", func(l logLine) bool { return l.Msg == "worker ready" && l.Worker == victim.Slot })
	kept := dialEcho(t, addr)
	defer kept.Close()
	keptPid, err := kept.echo("hold")
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	_, from = p.waitMsg(from, "roll complete")

	st = statusJSON(t, "-pidfile", pidfile)
	if st.LastRoll == nil || st.LastRoll.Result != "completed" || st.LastRoll.Generation != 2 {
		t.Errorf("last roll %+v, want the completed roll to generation 2", st.LastRoll)
	}
	if len(st.RetiringWorkers) != 1 || st.RetiringWorkers[0].Pid != keptPid || st.RetiringWorkers[0].DrainingSeconds <= 0 {
		t.Errorf("retiring %+v, want pid %d draining", st.RetiringWorkers, keptPid)
	}
	if len(st.Slots) != 2 || st.Slots[victim.Slot].LastExit == nil || st.Slots[victim.Slot].LastExit.Reason != "signal" {
		t.Fatalf("slots %+v, want slot %d's last exit", st.Slots, victim.Slot)
	}
	if len(st.Sockets) != 1 || !st.Sockets[0].Known || st.Sockets[0].QueueMax == 0 || st.Sockets[0].Addr != addr || st.Sockets[0].NotServed {
		t.Errorf("sockets %+v, want %s with a known queue, served", st.Sockets, addr)
	}
	if st.MetricsAddr == "" || st.GenerationsAlive != 2 {
		t.Errorf("metrics addr %q, %d generations alive; want an address and 2", st.MetricsAddr, st.GenerationsAlive)
	}
	out := mustCLI(t, "status", "-pidfile", pidfile)
	for _, want := range []string{
		"generation: 2 (2 generations alive)", "last roll:  to generation 2 completed in ",
		"metrics:    http://" + st.MetricsAddr + "/metrics",
		"LAST EXIT", "signal: killed (signal)", "RETIRING", "DRAINING", "SOCKET", addr,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("status:\n%s", out)

	// -watch: two refreshes, then SIGINT ends it with status 0.
	cmd := exec.Command(bins.handoff, "status", "-watch=100ms", "-pidfile", pidfile)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	frames := 0
	sc := bufio.NewScanner(stdout)
	for frames < 2 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "handoff ") && strings.Contains(sc.Text(), ", pid ") {
			frames++
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	go func() {
		for sc.Scan() {
		}
	}()
	if err := cmd.Wait(); err != nil || frames != 2 {
		t.Errorf("status -watch: %d frames, then %v on SIGINT; want 2 and exit 0", frames, err)
	}
	kept.Close()
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d, want 0", code)
	}
}

// TestPythonHTTPServerNotServed is the black hole: Debian's
// python3 -m http.server ignores fd 3 and binds a port of its own, so
// connections to handoff's port wait in the kernel's queue. handoff warns
// within -not-served-after, and status shows it.
func TestPythonHTTPServerNotServed(t *testing.T) {
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("no /usr/bin/python3 (Debian's python3, which .ci/run's gunicorn brings)")
	}
	checkFds(t)
	pidfile := t.TempDir() + "/handoff.pid"
	p := startProc(t, bins.handoff, []string{"-listen", "tcp://127.0.0.1:0", "-not-served-after", "1s",
		"-pidfile", pidfile, "-log-format", "json", "--", python, "-m", "http.server", "--bind", "127.0.0.1", "0"})
	l, from := p.waitMsg(0, "listening")
	_, from = p.waitReady(from, 1, 1)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	began := time.Now()
	for range 3 {
		c, err := net.DialTimeout("tcp", l.Addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	w, _ := p.waitMsg(from, "listening socket not served: connections wait in its accept queue and no worker takes them")
	t.Logf("warned %v after the first connection", time.Since(began).Round(time.Millisecond))
	if w.Level != "warn" {
		t.Errorf("the warning's level is %q", w.Level)
	}
	out := mustCLI(t, "status", "-pidfile", pidfile)
	if !strings.Contains(out, "WARNING:    socket ") || !strings.Contains(out, "is not served: 3 connections wait") {
		t.Errorf("status does not warn:\n%s", out)
	}
	raw := mustCLI(t, "status", "-json", "-pidfile", pidfile)
	var r response
	if err := json.Unmarshal([]byte(raw), &r); err != nil || r.Status == nil || len(r.Status.Sockets) != 1 {
		t.Fatalf("status -json: %v\n%s", err, raw)
	}
	if q := r.Status.Sockets[0]; !q.NotServed || q.QueueLength != 3 || q.NotServedSince == nil {
		t.Errorf("socket %+v, want not served with 3 waiting", q)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d, want 0", code)
	}
}

// TestStatusAgreesWithMetrics: status, status -json and /metrics are built
// from one supervisor.Stats, so after a crash and its restart, a roll and
// an in-place upgrade they agree on every counter and gauge they share, and
// the counters are the events caused.
func TestStatusAgreesWithMetrics(t *testing.T) {
	checkFds(t)
	const n = 3
	pidfile := t.TempDir() + "/handoff.pid"
	p := startProc(t, bins.handoff, []string{"-workers", fmt.Sprint(n), "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-metrics", "tcp://127.0.0.1:0", "-pidfile", pidfile, "-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "serving metrics")
	url := "http://" + l.Addr + "/metrics"
	_, from = p.waitReady(from, n, 1)

	victim := statusJSON(t, "-pidfile", pidfile).Workers[1]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, from = p.waitLog(from, "the replacement", func(l logLine) bool { return l.Msg == "worker ready" && l.Worker == victim.Slot })
	p.cmd.Process.Signal(syscall.SIGHUP)
	_, rolled := p.waitMsg(from, "roll complete")
	for range n { // the retired workers of generation 1, before and after the roll's end
		_, from = p.waitLog(from, "a retired worker's exit", func(l logLine) bool { return l.Msg == "worker exited" && l.Generation == 1 })
	}
	from = max(from, rolled)
	p.cmd.Process.Signal(syscall.SIGUSR2)
	_, _ = p.waitMsg(from, "supervisor upgraded in place")

	// Nothing happens now; a view taken between two equal JSON ones is of
	// the same state.
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	var (
		js   *statusReport
		text string
		m    scrape
	)
	for {
		before := statusJSON(t, "-pidfile", pidfile)
		text = mustCLI(t, "status", "-pidfile", pidfile)
		m = (&scraper{url: url}).get(client)
		if m.err != nil {
			t.Fatalf("GET %s: %v", url, m.err)
		}
		js = statusJSON(t, "-pidfile", pidfile)
		b1, _ := json.Marshal(countersOf(before))
		b2, _ := json.Marshal(countersOf(js))
		if string(b1) == string(b2) {
			break
		}
		if time.Now().After(deadline(t)) {
			t.Fatalf("the status keeps changing: %s, then %s", b1, b2)
		}
	}
	t.Logf("status:\n%s", text)

	fromJSON := countersOf(js)
	fromText := parseStatusText(t, text)
	fromMetrics := map[string]float64{
		"generation":         m.gauges["handoff_generation{}"],
		"generations_alive":  m.gauges["handoff_generations_alive{}"],
		"ready":              m.gauges["handoff_workers{state=ready}"],
		"starting":           m.gauges["handoff_workers{state=starting}"],
		"retiring":           m.gauges["handoff_workers{state=retiring}"],
		"backoff":            m.gauges["handoff_workers{state=backoff}"],
		"starts":             m.samples["handoff_worker_starts_total{}"],
		"rolls_completed":    m.samples["handoff_rolls_total{result=completed}"],
		"rolls_failed":       m.samples["handoff_rolls_total{result=failed}"],
		"rolls_rolled_back":  m.samples["handoff_rolls_total{result=rolled_back}"],
		"upgrades_completed": m.samples["handoff_upgrades_total{result=completed}"],
		"upgrades_failed":    m.samples["handoff_upgrades_total{result=failed}"],
	}
	for _, r := range []string{"clean", "failed", "signal", "watchdog", "recycled", "retired"} {
		fromMetrics["exits_"+r] = m.samples["handoff_worker_exits_total{reason="+r+"}"]
	}
	for _, r := range []string{"foreign", "no_credentials", "oversized", "malformed"} {
		fromMetrics["notify_"+r] = m.samples["handoff_notify_datagrams_dropped_total{reason="+r+"}"]
	}
	for _, q := range js.Sockets {
		fromMetrics["queue_max "+q.Addr] = m.gauges[`handoff_listen_queue_max{addr=`+q.Addr+`,socket=`+q.Name+`}`]
		fromMetrics["not_served "+q.Addr] = m.gauges[`handoff_listen_not_served{addr=`+q.Addr+`,socket=`+q.Name+`}`]
	}
	for k, v := range fromMetrics {
		if got, ok := fromJSON[k]; !ok || got != v {
			t.Errorf("%s: status -json %g (present %v), /metrics %g", k, got, ok, v)
		}
		if got, ok := fromText[k]; ok && got != fromJSON[k] {
			t.Errorf("%s: status %g, status -json %g", k, got, fromJSON[k])
		}
	}
	for k, v := range fromText {
		if fromJSON[k] != v {
			t.Errorf("%s: status %g, status -json %g", k, v, fromJSON[k])
		}
	}
	if len(fromText) < 18 {
		t.Errorf("only %d values read from the status text: %v", len(fromText), fromText)
	}
	// And they are the events caused: n starts, the restart (a start
	// failure too: the victim had not been up for the minimum uptime), the
	// roll's n.
	want := map[string]float64{
		"generation": 2, "ready": n, "retiring": 0, "starts": 2*n + 1, "restarts": 1, "start_failures": 1,
		"exits_signal": 1, "exits_retired": n, "exits_clean": 0, "exits_failed": 0,
		"rolls_completed": 1, "upgrades_completed": 1,
	}
	for k, v := range want {
		if fromJSON[k] != v {
			t.Errorf("%s = %g, want %g", k, fromJSON[k], v)
		}
	}
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d, want 0", code)
	}
}

// countersOf flattens the counters and gauges of a status, named as in
// TestStatusAgreesWithMetrics.
func countersOf(st *statusReport) map[string]float64 {
	c := map[string]float64{
		"generation": float64(st.Generation), "generations_alive": float64(st.GenerationsAlive),
		"retiring": float64(st.Retiring), "workers": float64(len(st.Workers)),
		"starts": float64(st.Starts), "restarts": float64(st.Restarts), "start_failures": float64(st.StartFailures),
		"exits_clean": float64(st.Exits.Clean), "exits_failed": float64(st.Exits.Failed), "exits_signal": float64(st.Exits.Signal),
		"exits_watchdog": float64(st.Exits.Watchdog), "exits_recycled": float64(st.Exits.Recycled), "exits_retired": float64(st.Exits.Retired),
		"rolls_completed": float64(st.Rolls.Completed), "rolls_failed": float64(st.Rolls.Failed), "rolls_rolled_back": float64(st.Rolls.RolledBack),
		"upgrades_completed": float64(st.Upgrades.Completed), "upgrades_failed": float64(st.Upgrades.Failed),
		"notify_foreign": float64(st.NotifyDropped.Foreign), "notify_no_credentials": float64(st.NotifyDropped.NoCredentials),
		"notify_oversized": float64(st.NotifyDropped.Oversized), "notify_malformed": float64(st.NotifyDropped.Malformed),
		"ready": 0, "starting": 0, "backoff": 0,
	}
	for _, w := range st.Workers {
		switch w.State {
		case "ready":
			c["ready"]++
		case "starting":
			c["starting"]++
		case "stopping":
			c["retiring"]++
		}
	}
	for _, sl := range st.Slots {
		if sl.NextRetry != nil {
			c["backoff"]++
		}
	}
	for _, q := range st.Sockets {
		c["queue_max "+q.Addr] = float64(q.QueueMax)
		c["not_served "+q.Addr] = 0
		if q.NotServed {
			c["not_served "+q.Addr] = 1
		}
	}
	return c
}

// parseStatusText reads the counters from status's text, named as in
// countersOf.
func parseStatusText(t *testing.T, text string) map[string]float64 {
	t.Helper()
	c := map[string]float64{"generations_alive": 1, "retiring": 0}
	for _, line := range []struct {
		re    string
		names []string
	}{
		{`(?m)^generation: (\d+)(?: \((\d+) generations alive\))?`, []string{"generation", "generations_alive"}},
		{`(?m)^workers: +(\d+), (\d+) ready(?:, (\d+) more retiring)?`, []string{"workers", "ready", "retiring"}},
		{`(?m)^exits: +(\d+) clean, (\d+) failed, (\d+) by signal, (\d+) by the watchdog \(not asked for\); (\d+) recycled, (\d+) retired$`,
			[]string{"exits_clean", "exits_failed", "exits_signal", "exits_watchdog", "exits_recycled", "exits_retired"}},
		{`(?m)^starts: +(\d+); (\d+) restarts, (\d+) start failures$`, []string{"starts", "restarts", "start_failures"}},
		{`(?m)^rolls: +(\d+) completed, (\d+) rolled back, (\d+) failed; upgrades: (\d+) completed, (\d+) failed$`,
			[]string{"rolls_completed", "rolls_rolled_back", "rolls_failed", "upgrades_completed", "upgrades_failed"}},
	} {
		m := regexp.MustCompile(line.re).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("status has no line matching %s:\n%s", line.re, text)
			continue
		}
		for i, name := range line.names {
			if m[i+1] == "" {
				continue // an optional part: the default above
			}
			v, err := strconv.ParseFloat(m[i+1], 64)
			if err != nil {
				t.Fatal(err)
			}
			c[name] = v
		}
	}
	return c
}

//go:build linux

package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests in this file run the deployment files of docs/ as written: they
// read each file, take its commands apart, and run them with only the paths
// and ports of the machine they were written for replaced. A changed file
// changes what runs. What cannot run here (systemctl, docker, kubectl) is
// said so in docs/README.md.

// repoRoot is the repository's root, from cmd/handoff.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func readDoc(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// needGunicorn skips t without Debian's gunicorn, which the docs name by
// its path.
func needGunicorn(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/gunicorn"); err != nil {
		t.Skip("/usr/bin/gunicorn is missing: apt-get install gunicorn (.ci/run installs it)")
	}
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// unitKeys returns the values of key in a unit file, in its order,
// continuation lines joined and comments dropped.
func unitKeys(text, key string) []string {
	var vals []string
	var cont *string
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if cont != nil {
			more := strings.TrimSpace(line)
			c := strings.HasSuffix(more, `\`)
			*cont += " " + strings.TrimSuffix(more, `\`)
			if !c {
				cont = nil
			}
			continue
		}
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != key {
			continue
		}
		vals = append(vals, strings.TrimSuffix(strings.TrimSpace(v), `\`))
		if strings.HasSuffix(strings.TrimSpace(v), `\`) {
			cont = &vals[len(vals)-1]
		}
	}
	return vals
}

// unitKey is the one value of key, or fails t.
func unitKey(t *testing.T, name, text, key string) string {
	t.Helper()
	vals := unitKeys(text, key)
	if len(vals) != 1 {
		t.Fatalf("%s: %d %s= lines, want 1", name, len(vals), key)
	}
	return vals[0]
}

// execArgv splits an Exec*= value the way systemd does for one without
// quotes or prefixes, which the test refuses rather than misreads.
func execArgv(t *testing.T, name, v string) []string {
	t.Helper()
	if v == "" || strings.ContainsAny(v, `"';`) || strings.ContainsAny(v[:1], "-@+!:") {
		t.Fatalf("%s: %q is empty or has quotes, ';' or a prefix: teach the test systemd's quoting", name, v)
	}
	return strings.Fields(v)
}

// backticked returns the `…` spans of text, each within a line, that
// start with prefix.
func backticked(text, prefix string) []string {
	var out []string
	for line := range strings.Lines(text) {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			continue
		}
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(line, -1) {
			if strings.HasPrefix(m[1], prefix) {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// rewriter replaces the paths and addresses of the machine a doc was
// written for with this one's, one argument at a time.
type rewriter struct {
	t     *testing.T
	paths map[string]string // a path or path prefix, as written → here
	addrs map[string]string // HOST:PORT as written → here
}

func newRewriter(t *testing.T) *rewriter {
	return &rewriter{t: t, paths: map[string]string{}, addrs: map[string]string{}}
}

// addr maps the written HOST:PORT to a free 127.0.0.1 port, the same one
// every time it is asked.
func (r *rewriter) addr(written string) string {
	if a, ok := r.addrs[written]; ok {
		return a
	}
	a := freeAddr(r.t)
	r.addrs[written] = a
	return a
}

func (r *rewriter) arg(a string) string {
	for _, scheme := range []string{"tcp://", ""} {
		if hp, ok := strings.CutPrefix(a, scheme); ok {
			if host, _, err := net.SplitHostPort(hp); err == nil && net.ParseIP(host) != nil {
				return scheme + r.addr(hp)
			}
		}
	}
	for from, to := range r.paths {
		if a == from {
			return to
		}
		if rest, ok := strings.CutPrefix(a, from+"/"); ok {
			return filepath.Join(to, rest)
		}
	}
	return a
}

// argv rewrites args, drops "-user NAME" when the test cannot switch to
// NAME, and fails t if an absolute path is left that does not exist here.
func (r *rewriter) argv(args []string) []string {
	r.t.Helper()
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-user" && i+1 < len(args) {
			if _, err := user.Lookup(args[i+1]); err != nil || os.Geteuid() != 0 {
				r.t.Logf("dropping -user %s: not root, or no such user here", args[i+1])
				i++
				continue
			}
		}
		a := r.arg(args[i])
		// A path the test mapped is its own (in t.TempDir, which follows
		// GOTMPDIR, not TMPDIR: CI sets both); one left as written must exist.
		if filepath.IsAbs(a) && a == args[i] {
			if _, err := os.Stat(a); err != nil {
				r.t.Fatalf("%s (written %s) does not exist here: map it in the test", a, args[i])
			}
		}
		out = append(out, a)
	}
	return out
}

// getApp GETs url and checks it is docs/app/app.py that answered.
func getApp(t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(string(body), "hello from myapp") {
		t.Fatalf("GET %s: %d %q %v, want 200 from docs/app/app.py", url, resp.StatusCode, body, err)
	}
}

// waitArbiters GETs url until every gunicorn worker of every arbiter (a
// worker of the handoff of pidfile) has answered, as many per arbiter as
// gunicorn's --workers in argv: gunicorn says READY=1 before its own
// workers boot, and a SIGTERM in that moment keeps it to the stop timeout.
func waitArbiters(t *testing.T, url, pidfile string, argv []string) {
	t.Helper()
	per := 1
	if i := slices.Index(argv, "--"); i >= 0 {
		if j := slices.Index(argv[i:], "--workers"); j >= 0 && i+j+1 < len(argv) {
			per = atoi(argv[i+j+1])
		}
	}
	if per < 1 {
		t.Fatalf("gunicorn --workers in %q: want a number", argv)
	}
	seen := map[string]map[string]bool{} // gunicorn workers by arbiter
	for _, pid := range workerPids(statusJSON(t, "-pidfile", pidfile)) {
		seen[strconv.Itoa(pid)] = map[string]bool{}
	}
	left := len(seen)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; left > 0; i++ {
		if i == 10000 {
			t.Fatalf("10000 requests, and not %d gunicorn workers of each arbiter answered: %v", per, seen)
		}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`worker (\d+) \(arbiter (\d+)\)`).FindStringSubmatch(string(body))
		if err != nil || m == nil {
			t.Fatalf("GET %s: %q %v, want an answer naming its worker and arbiter", url, body, err)
		}
		if w, ok := seen[m[2]]; ok && !w[m[1]] {
			w[m[1]] = true
			if len(w) == per {
				left--
			}
		}
	}
}

// statusCode GETs url and returns its status code.
func statusCode(t *testing.T, url string) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// serviceRewriter maps docs/myapp.service's machine to this one: the built
// handoff, a temporary RuntimeDirectory, docs/app for /srv/myapp.
func serviceRewriter(t *testing.T, unit string) *rewriter {
	r := newRewriter(t)
	r.paths["/usr/local/bin/handoff"] = bins.handoff
	run := filepath.Join(shortTempDir(t), "run")
	if err := os.Mkdir(run, 0o700); err != nil { // RuntimeDirectoryMode=0700
		t.Fatal(err)
	}
	r.paths["/run/"+unitKey(t, "myapp.service", unit, "RuntimeDirectory")] = run
	r.paths["/srv/myapp"] = filepath.Join(repoRoot(t), "docs", "app")
	return r
}

// runUnit runs a service unit's ExecStart, rewritten by r, as systemd does
// for Type=notify, with a notify socket; waits for READY=1 and checks the
// service with get; then runs its ExecReload with $MAINPID and waits for
// RELOADING=1 and READY=1. It returns the unit's main process, the notify
// socket and the service's address.
func runUnit(t *testing.T, name, unit string, r *rewriter, get func(*testing.T, string)) (*proc, *net.UnixConn, string) {
	t.Helper()
	for key, want := range map[string]string{"Type": "notify", "KillMode": "mixed"} {
		if got := unitKey(t, name, unit, key); got != want {
			t.Fatalf("%s: %s=%s; the test expects %s", name, key, got, want)
		}
	}
	start := r.argv(execArgv(t, name+" ExecStart", unitKey(t, name, unit, "ExecStart")))
	if len(r.addrs) != 1 {
		t.Fatalf("%s: ExecStart listens on %d addresses, the test expects 1", name, len(r.addrs))
	}
	var addr string
	for _, a := range r.addrs {
		addr = a
	}
	manager := listenNotify(t)
	t.Cleanup(func() { manager.Close() })
	p := startProc(t, start[0], start[1:], "NOTIFY_SOCKET="+manager.LocalAddr().String())
	waitNotify(t, manager, p.pid, "READY=1")
	get(t, "http://"+addr+"/")

	// systemctl reload
	reload := execArgv(t, name+" ExecReload", unitKey(t, name, unit, "ExecReload"))
	for i, a := range reload {
		reload[i] = strings.ReplaceAll(a, "$MAINPID", strconv.Itoa(p.pid))
	}
	if out, err := exec.Command(reload[0], reload[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: ExecReload %q: %v\n%s", name, reload, err, out)
	}
	waitNotify(t, manager, p.pid, "RELOADING=1")
	waitNotify(t, manager, p.pid, "READY=1")
	get(t, "http://"+addr+"/")
	return p, manager, addr
}

// TestDocsSystemdService runs docs/myapp.service's ExecStart as written,
// with its NOTIFY_SOCKET, then its ExecReload with $MAINPID, the upgrade
// commands its comments give, and the stop KillMode=mixed sends.
func TestDocsSystemdService(t *testing.T) {
	needGunicorn(t)
	checkFds(t)
	unit := readDoc(t, "docs/myapp.service")
	r := serviceRewriter(t, unit)
	p, manager, addr := runUnit(t, "myapp.service", unit, r, getApp)
	mainpid := strconv.Itoa(p.pid)
	from := 0

	// The upgrades the unit's comments give, each in turn.
	upgrades := backticked(unit, "handoff upgrade")
	for _, c := range backticked(unit, "systemctl kill") {
		if strings.Contains(c, "USR2") { // not the prose's plain `systemctl kill`
			upgrades = append(upgrades, c)
		}
	}
	if len(upgrades) != 2 {
		t.Fatalf("myapp.service names %q to upgrade; the test knows handoff upgrade and systemctl kill", upgrades)
	}
	for _, cmd := range upgrades {
		before := workerPids(statusJSON(t, "-pidfile", r.arg("/run/myapp/handoff.pid")))
		args := strings.Fields(cmd)
		if args[0] == "systemctl" {
			// systemctl needs systemd as PID 1: its equivalent, the signal
			// to the main process alone.
			if !slices.Contains(args, "--kill-whom=main") || !slices.Contains(args, "USR2") {
				t.Fatalf("%q: signals more than handoff, or not USR2", cmd)
			}
			args = []string{"/bin/kill", "-USR2", mainpid}
		} else {
			args = r.argv(append([]string{"/usr/local/bin/handoff"}, args[1:]...))
		}
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%q (for %q): %v\n%s", args, cmd, err, out)
		}
		_, from = p.waitMsg(from, "supervisor upgraded in place")
		after := workerPids(statusJSON(t, "-pidfile", r.arg("/run/myapp/handoff.pid")))
		if !slices.Equal(before, after) {
			t.Errorf("after %q: workers %v, want %v kept", cmd, after, before)
		}
		getApp(t, "http://"+addr+"/")
	}

	// systemctl stop: KillMode=mixed sends SIGTERM to handoff alone.
	waitArbiters(t, "http://"+addr+"/", r.arg("/run/myapp/handoff.pid"), execArgv(t, "ExecStart", unitKey(t, "myapp.service", unit, "ExecStart")))
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
	waitNotify(t, manager, p.pid, "STOPPING=1")
}

// TestDocsSystemdSocket runs docs/myapp.socket with systemd's activator in
// front of myapp.service's ExecStart without -listen, as the socket unit's
// comment says.
func TestDocsSystemdSocket(t *testing.T) {
	needGunicorn(t)
	checkFds(t)
	sock := readDoc(t, "docs/myapp.socket")
	unit := readDoc(t, "docs/myapp.service")
	r := serviceRewriter(t, unit)
	written := execArgv(t, "ExecStart", unitKey(t, "myapp.service", unit, "ExecStart"))
	i := slices.Index(written, "-listen")
	if i < 0 {
		t.Fatal("myapp.service's ExecStart has no -listen to drop")
	}
	start := r.argv(slices.Delete(written, i, i+2))
	runSocket(t, "myapp.socket", sock, r, start)
}

// runSocket runs the socket unit sock with systemd's activator, in front
// of start (without -listen), and checks that handoff takes the socket,
// under its name, says READY=1, serves docs/app/app.py, and stops.
func runSocket(t *testing.T, name, sock string, r *rewriter, start []string) {
	t.Helper()
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed: apt-get install systemd (.ci/run installs it)")
	}
	addr := r.addr(unitKey(t, name, sock, "ListenStream"))
	fdname := unitKey(t, name, sock, "FileDescriptorName")
	manager := listenNotify(t)
	defer manager.Close()
	p := startProc(t, activate, append([]string{"-l", addr, "--fdname=" + fdname,
		"-E", "NOTIFY_SOCKET=" + manager.LocalAddr().String()}, start...))
	p.waitLine("Listening on " + addr)
	getApp(t, "http://"+addr+"/") // the first connection starts handoff
	l, _ := p.waitMsg(0, "handoff starting")
	if want := []string{fdname + "=" + addr}; !slices.Equal(l.SystemdSockets, want) {
		t.Errorf("handoff started with systemd sockets %q, want %q", l.SystemdSockets, want)
	}
	waitNotify(t, manager, p.pid, "READY=1")
	i := slices.Index(start, "-pidfile")
	if i < 0 || i+1 == len(start) {
		t.Fatalf("%s: the service has no -pidfile", name)
	}
	waitArbiters(t, "http://"+addr+"/", start[i+1], start)
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}

// iniBlocks returns the ```ini blocks of a markdown text.
func iniBlocks(text string) []string {
	var out []string
	for _, part := range strings.Split(text, "```ini\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		out = append(out, block)
	}
	return out
}

// TestDocsReadmeUnits runs the systemd units the READMEs show, as
// TestDocsSystemdService and TestDocsSystemdSocket run docs/'s: README.md's
// with the example for /usr/local/bin/myserver (a program built on the
// supervisor package), cmd/handoff/README.md's service and its socket
// variant with gunicorn and docs/app.
func TestDocsReadmeUnits(t *testing.T) {
	needGunicorn(t)
	checkFds(t)
	t.Run("README.md", func(t *testing.T) {
		blocks := iniBlocks(readDoc(t, "README.md"))
		if len(blocks) != 1 {
			t.Fatalf("README.md: %d ini blocks, the test knows 1 (a service)", len(blocks))
		}
		r := newRewriter(t)
		r.paths["/usr/local/bin/myserver"] = bins.example
		p, manager, _ := runUnit(t, "README.md's unit", blocks[0], r, func(t *testing.T, url string) {
			if code := statusCode(t, url); code != 200 {
				t.Fatalf("GET %s: %d, want 200", url, code)
			}
		})
		if code := p.stop(); code != 0 {
			t.Errorf("the example exited with %d after SIGTERM, want 0", code)
		}
		waitNotify(t, manager, p.pid, "STOPPING=1")
	})
	t.Run("cmd/handoff/README.md", func(t *testing.T) {
		blocks := iniBlocks(readDoc(t, "cmd/handoff/README.md"))
		if len(blocks) != 3 {
			t.Fatalf("cmd/handoff/README.md: %d ini blocks, the test knows 3 (service, socket, service with the socket)", len(blocks))
		}
		if u := unitKeys(blocks[0], "User"); len(u) > 0 {
			t.Logf("User=%s: not switched to here", u[0])
		}
		r := serviceRewriter(t, blocks[0])
		p, manager, addr := runUnit(t, "cmd/handoff/README.md's unit", blocks[0], r, getApp)
		waitArbiters(t, "http://"+addr+"/", r.arg("/run/myapp/handoff.pid"), execArgv(t, "ExecStart", unitKey(t, "README", blocks[0], "ExecStart")))
		if code := p.stop(); code != 0 {
			t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
		}
		waitNotify(t, manager, p.pid, "STOPPING=1")

		r = serviceRewriter(t, blocks[0])
		start := r.argv(execArgv(t, "ExecStart", unitKey(t, "cmd/handoff/README.md's socket service", blocks[2], "ExecStart")))
		runSocket(t, "cmd/handoff/README.md's socket", blocks[1], r, start)
	})
}

// dockerfile is a Dockerfile taken apart: its instructions, continuation
// lines joined and comments dropped, and its comment lines.
type dockerfile struct {
	instrs   [][2]string // instruction, its arguments
	comments []string
}

func parseDockerfile(text string) dockerfile {
	var d dockerfile
	var cur string
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "#"); ok {
			d.comments = append(d.comments, strings.TrimSpace(c))
			continue
		}
		if more, ok := strings.CutSuffix(line, `\`); ok {
			cur += more + " "
			continue
		}
		cur += line
		if f := strings.TrimSpace(cur); f != "" {
			instr, args, _ := strings.Cut(f, " ")
			d.instrs = append(d.instrs, [2]string{strings.ToUpper(instr), strings.TrimSpace(args)})
		}
		cur = ""
	}
	return d
}

// all returns the arguments of every instruction named instr.
func (d dockerfile) all(instr string) []string {
	var out []string
	for _, in := range d.instrs {
		if in[0] == instr {
			out = append(out, in[1])
		}
	}
	return out
}

// execForm decodes the JSON-array form of the last instr (ENTRYPOINT, CMD).
func (d dockerfile) execForm(t *testing.T, instr string) []string {
	t.Helper()
	all := d.all(instr)
	if len(all) == 0 {
		t.Fatalf("Dockerfile: no %s", instr)
	}
	var argv []string
	if err := json.Unmarshal([]byte(all[len(all)-1]), &argv); err != nil {
		t.Fatalf("Dockerfile: %s %s is not the JSON-array form: %v", instr, all[len(all)-1], err)
	}
	return argv
}

// dockerignore matches paths of the build context against .dockerignore's
// patterns as Docker does: a path is excluded by the last pattern that
// matches it or one of its parent directories ("!" re-includes); "*" and
// "?" stay within a path element, "**" crosses them.
type dockerignore []struct {
	re  *regexp.Regexp
	not bool
}

func parseDockerignore(t *testing.T, text string) dockerignore {
	t.Helper()
	var d dockerignore
	for line := range strings.Lines(text) {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		not := strings.HasPrefix(p, "!")
		p = filepath.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			case p[i] == '[' || p[i] == '\\':
				t.Fatalf(".dockerignore: %q: the test does not read [ or \\", line)
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("$")
		d = append(d, struct {
			re  *regexp.Regexp
			not bool
		}{regexp.MustCompile(re.String()), not})
	}
	return d
}

// excluded says whether the context path rel (slash-separated) is left out.
func (d dockerignore) excluded(rel string) bool {
	out := false
	for _, p := range d {
		for q := rel; q != "." && q != "/"; q = filepath.Dir(q) {
			if p.re.MatchString(q) {
				out = !p.not
				break
			}
		}
	}
	return out
}

// TestDocsDockerfileContext checks that docs/Dockerfile builds from the
// repository's root, where its header says to run docker build (no Docker
// engine here): every path it copies exists and is not in .dockerignore,
// nor is any file of the packages its go build compiles; .git and build
// outputs are.
func TestDocsDockerfileContext(t *testing.T) {
	root := repoRoot(t)
	d := parseDockerfile(readDoc(t, "docs/Dockerfile"))
	ign := parseDockerignore(t, readDoc(t, ".dockerignore"))
	if !slices.ContainsFunc(d.comments, func(c string) bool {
		return strings.HasPrefix(c, "docker build -f docs/Dockerfile ") && slices.Contains(strings.Fields(c), ".")
	}) {
		t.Fatalf("Dockerfile: no 'docker build -f docs/Dockerfile … .' in its header: which context does it build from?")
	}
	copies := 0
	for _, args := range d.all("COPY") {
		f := strings.Fields(args)
		if slices.ContainsFunc(f, func(a string) bool { return strings.HasPrefix(a, "--from=") }) {
			continue
		}
		f = slices.DeleteFunc(f, func(a string) bool { return strings.HasPrefix(a, "--") })
		for _, src := range f[:len(f)-1] {
			copies++
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("COPY %s: %v", args, err)
			}
			if rel := filepath.Clean(src); rel != "." && ign.excluded(rel) {
				t.Errorf("COPY %s: %s is excluded by .dockerignore", args, src)
			}
		}
	}
	if copies == 0 {
		t.Fatal("Dockerfile: no COPY from the context")
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}|{{join .GoFiles \",\"}}|{{join .EmbedFiles \",\"}}{{end}}", "./cmd/handoff")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	need := []string{"go.mod", "go.sum"}
	for line := range strings.Lines(string(out)) {
		dir, files, _ := strings.Cut(strings.TrimSpace(line), "|")
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module from the cache: go mod download fetches it
		}
		for f := range strings.SplitSeq(strings.ReplaceAll(files, "|", ","), ",") {
			if f != "" {
				need = append(need, filepath.Join(rel, f))
			}
		}
	}
	for _, f := range need {
		if ign.excluded(f) {
			t.Errorf("%s, which the image's go build needs, is excluded by .dockerignore", f)
		}
	}
	for _, f := range []string{".git", "handoff", "cmd/handoff/handoff", "example/example", "cmd/handoff/handoff.test", "bench/results/BENCHMARKS.md"} {
		if !ign.excluded(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

// TestDocsContainer runs docs/Dockerfile's ENTRYPOINT and CMD as the image
// would, with only the paths and ports of the image replaced, and checks
// docs/kubernetes.yaml against it: its ports are the flags' ports, its
// probes answer 200, and its timings fit the flags. Then the commands the
// Dockerfile's header gives for a running container, and a stop.
func TestDocsContainer(t *testing.T) {
	needGunicorn(t)
	checkFds(t)
	d := parseDockerfile(readDoc(t, "docs/Dockerfile"))
	written := append(d.execForm(t, "ENTRYPOINT"), d.execForm(t, "CMD")...)
	r := newRewriter(t)
	r.paths["/usr/local/bin/handoff"] = bins.handoff
	r.paths["/srv/app"] = filepath.Join(repoRoot(t), "docs", "app")
	// The pid file's directory must be one the image makes.
	i := slices.Index(written, "-pidfile")
	if i < 0 {
		t.Fatal("Dockerfile: ENTRYPOINT has no -pidfile: handoff reload/upgrade cannot find handoff")
	}
	piddir := filepath.Dir(written[i+1])
	if !slices.ContainsFunc(d.all("RUN"), func(run string) bool { return strings.Contains(run, "mkdir -p "+piddir) }) {
		t.Fatalf("Dockerfile: no RUN mkdir -p %s for -pidfile %s", piddir, written[i+1])
	}
	r.paths[piddir] = shortTempDir(t)
	argv := r.argv(written)
	flag := func(name string) string {
		i := slices.Index(written, name)
		if i < 0 {
			t.Fatalf("Dockerfile: ENTRYPOINT has no %s", name)
		}
		return written[i+1]
	}
	port := func(addr string) string {
		_, p, err := net.SplitHostPort(strings.TrimPrefix(addr, "tcp://"))
		if err != nil {
			t.Fatalf("Dockerfile: %s: %v", addr, err)
		}
		return p
	}
	listen, health := flag("-listen"), flag("-health")
	exposed := strings.Fields(strings.Join(d.all("EXPOSE"), " "))
	if !slices.Contains(exposed, port(listen)) || !slices.Contains(exposed, port(health)) {
		t.Errorf("Dockerfile: EXPOSE %q, want the ports of -listen %s and -health %s", exposed, listen, health)
	}
	k := parseKube(t, readDoc(t, "docs/kubernetes.yaml"))
	if k.ports["http"] != port(listen) {
		t.Errorf("kubernetes.yaml: containerPort http %s, want -listen's %s", k.ports["http"], port(listen))
	}
	delay, err1 := time.ParseDuration(flag("-shutdown-delay"))
	stop, err2 := time.ParseDuration(flag("-stop-timeout"))
	if err1 != nil || err2 != nil {
		t.Fatalf("Dockerfile: %v %v", err1, err2)
	}
	if g := time.Duration(k.grace) * time.Second; g <= delay+stop {
		t.Errorf("kubernetes.yaml: terminationGracePeriodSeconds %v, want above -shutdown-delay %v + -stop-timeout %v", g, delay, stop)
	}
	ready, ok := k.probes["readinessProbe"]
	if !ok {
		t.Fatal("kubernetes.yaml: no readinessProbe")
	}
	if out := time.Duration(ready.period*ready.failures) * time.Second; out >= delay {
		t.Errorf("kubernetes.yaml: readiness fails after %v, want within -shutdown-delay %v", out, delay)
	}

	p := startProc(t, argv[0], argv[1:])
	l, from := p.waitMsg(0, "listening")
	_, from = p.waitReady(from, atoi(flag("-workers")), 1)
	getApp(t, "http://"+l.Addr+"/")
	for name, pr := range k.probes {
		if k.ports[pr.port] != port(health) {
			t.Errorf("kubernetes.yaml: %s on port %s (%s), want -health's %s", name, pr.port, k.ports[pr.port], port(health))
		}
		if code := statusCode(t, "http://"+r.arg(strings.TrimPrefix(health, "tcp://"))+pr.path); code != 200 {
			t.Errorf("kubernetes.yaml: %s GET %s: %d, want 200", name, pr.path, code)
		}
	}

	// The commands for a running container, in the Dockerfile's header and
	// docs/README.md: docker exec NAME handoff …, kubectl exec POD -- handoff
	// …, with handoff found on the image's PATH.
	var execs []string
	for _, c := range append(d.comments, append(strings.Split(readDoc(t, "docs/README.md"), "\n"),
		backticked(readDoc(t, "docs/README.md"), "kubectl exec ")...)...) {
		c, _, _ = strings.Cut(c, "#")
		if rest, ok := strings.CutPrefix(c, "docker exec "); ok {
			execs = append(execs, strings.Join(strings.Fields(rest)[1:], " ")) // after the container's name
		} else if _, rest, ok := strings.Cut(c, " -- "); ok && strings.HasPrefix(c, "kubectl exec ") {
			execs = append(execs, rest)
		}
	}
	want := map[string]string{"status": "workers:", "reload": "rolled to generation", "upgrade": "upgraded in place"}
	seen := map[string]bool{}
	for _, e := range execs {
		f := strings.Fields(e)
		if len(f) < 2 || f[0] != "handoff" || want[f[1]] == "" {
			t.Fatalf("%q in a container: the test knows handoff status, reload and upgrade", e)
		}
		t.Logf("in the container: %s", e)
		out := mustCLI(t, r.argv(f[1:])...)
		if !strings.Contains(out, want[f[1]]) {
			t.Errorf("%s said:\n%s", e, out)
		}
		seen[f[1]] = true
		getApp(t, "http://"+l.Addr+"/")
	}
	for _, c := range []string{"reload", "upgrade"} {
		if !seen[c] {
			t.Errorf("the docs give no docker exec … handoff %s", c)
		}
	}

	waitArbiters(t, "http://"+l.Addr+"/", r.arg(flag("-pidfile")), written)
	// docker stop: SIGTERM (STOPSIGNAL); /readyz turns 503 first while the
	// workers serve.
	p.strict = true
	p.cmd.Process.Signal(syscall.SIGTERM)
	readyz := "http://" + r.arg(strings.TrimPrefix(health, "tcp://")) + ready.path
	for statusCode(t, readyz) == 200 {
	}
	getApp(t, "http://"+l.Addr+"/")
	if code := p.wait(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}

// kube is what TestDocsContainer reads of docs/kubernetes.yaml.
type kube struct {
	grace  int
	ports  map[string]string // containerPort by name
	probes map[string]kubeProbe
}

type kubeProbe struct {
	path, port       string
	period, failures int
}

// parseKube reads the few fields the test checks, line by line, in the
// flow style the file uses; a container command or args (which would
// replace the image's ENTRYPOINT or CMD) fails t.
func parseKube(t *testing.T, text string) kube {
	t.Helper()
	k := kube{ports: map[string]string{}, probes: map[string]kubeProbe{}}
	portRe := regexp.MustCompile(`^- \{name: (\w+), containerPort: (\d+)\}$`)
	getRe := regexp.MustCompile(`^httpGet: \{path: (\S+), port: (\w+)\}$`)
	var cur string
	for line := range strings.Lines(text) {
		f := strings.TrimSpace(line)
		if strings.HasPrefix(f, "#") {
			continue
		}
		key, val, _ := strings.Cut(f, ":")
		val = strings.TrimSpace(val)
		switch {
		case key == "command" || key == "args":
			t.Fatalf("kubernetes.yaml: the container has %s: teach the test to run it", key)
		case key == "terminationGracePeriodSeconds":
			k.grace = atoi(val)
		case portRe.MatchString(f):
			m := portRe.FindStringSubmatch(f)
			k.ports[m[1]] = m[2]
		case strings.HasSuffix(key, "Probe") && val == "":
			cur = key
			k.probes[cur] = kubeProbe{}
		case cur != "" && getRe.MatchString(f):
			m := getRe.FindStringSubmatch(f)
			p := k.probes[cur]
			p.path, p.port = m[1], m[2]
			k.probes[cur] = p
		case cur != "" && key == "periodSeconds":
			p := k.probes[cur]
			p.period = atoi(val)
			k.probes[cur] = p
		case cur != "" && key == "failureThreshold":
			p := k.probes[cur]
			p.failures = atoi(val)
			k.probes[cur] = p
		default:
			if !strings.HasPrefix(line, strings.Repeat(" ", 12)) {
				cur = "" // out of the probe's block
			}
		}
	}
	if len(k.probes) == 0 || k.grace == 0 {
		t.Fatalf("kubernetes.yaml: no probes or no terminationGracePeriodSeconds found")
	}
	for name, p := range k.probes {
		if p.path == "" || p.period <= 0 || p.failures <= 0 {
			t.Fatalf("kubernetes.yaml: %s: %+v, want httpGet path and port, periodSeconds, failureThreshold", name, p)
		}
	}
	return k
}

// shBlocks returns the lines of the ```sh blocks of a markdown text, "#"
// comments cut.
func shBlocks(text string) []string {
	var out []string
	for _, part := range strings.Split(text, "```sh\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		for line := range strings.Lines(block) {
			line, _, _ = strings.Cut(line, "#")
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
	}
	return out
}

// TestDocsCLIReadme runs cmd/handoff/README.md's commands against one
// handoff: its first command, from the repository's root, then every
// handoff command of its sh blocks, the control protocol its socat line
// speaks, the session's jq line, and the session's stop, kill -INT $(cat
// PIDFILE). The pid files and control directory are the test's.
func TestDocsCLIReadme(t *testing.T) {
	needGunicorn(t)
	if gunicorn, err := exec.LookPath("gunicorn"); err != nil || gunicorn != "/usr/bin/gunicorn" {
		t.Skipf("gunicorn on PATH is %q (%v), not Debian's /usr/bin/gunicorn", gunicorn, err)
	}
	checkFds(t)
	text := readDoc(t, "cmd/handoff/README.md")
	dir := shortTempDir(t)
	pidfile := filepath.Join(dir, "handoff.pid")
	r := newRewriter(t)
	for _, p := range []string{"/tmp/app.pid", "/tmp/demo/app.pid", "/run/app/handoff.pid"} {
		r.paths[p] = pidfile
	}
	r.paths["/run/app"] = dir
	var start []string
	var cmds [][]string
	for _, line := range shBlocks(text) {
		f := strings.Fields(line)
		switch {
		case f[0] != "handoff":
		case f[1] == "-listen":
			if start != nil {
				t.Fatalf("cmd/handoff/README.md: two commands start handoff: %q and %q", start, f)
			}
			start = r.argv(f[1:])
		default:
			cmds = append(cmds, r.argv(f[1:]))
		}
	}
	if start == nil || len(cmds) == 0 {
		t.Fatalf("cmd/handoff/README.md: no handoff -listen … or no control command in its sh blocks")
	}
	// As typed in a shell at the root of a clone.
	p := startProc(t, "/bin/sh", append([]string{"-c", `cd "$0" && exec "$@"`, repoRoot(t), bins.handoff}, start...))
	l, from := p.waitMsg(0, "listening")
	p.waitReady(from, atoi(start[slices.Index(start, "-workers")+1]), 1)
	url := "http://" + l.Addr + "/"
	want := map[string]string{"status": "workers:", "reload": "rolled to generation", "upgrade": "upgraded in place", "scale": "scaling to"}
	for _, c := range cmds {
		if want[c[0]] == "" {
			t.Fatalf("cmd/handoff/README.md: handoff %q: the test knows status, reload, upgrade and scale", c)
		}
		if out := mustCLI(t, c...); !strings.Contains(out, want[c[0]]) {
			t.Errorf("handoff %s said:\n%s", strings.Join(c, " "), out)
		}
		waitArbiters(t, url, pidfile, start)
	}

	socat := backticked(text, "socat - UNIX-CONNECT:")
	if len(socat) != 1 {
		t.Fatalf("cmd/handoff/README.md: %d socat lines, the test knows 1", len(socat))
	}
	conn, err := net.Dial("unix", r.arg(strings.TrimPrefix(socat[0], "socat - UNIX-CONNECT:")))
	if err != nil {
		t.Fatalf("%s: %v", socat[0], err)
	}
	conn.SetDeadline(deadline(t))
	io.WriteString(conn, "status\n")
	answer, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || !strings.HasPrefix(string(answer), `{"ok":true,"status":{`) {
		t.Errorf("%s, status: %q %v", socat[0], answer, err)
	}

	// The session's $ lines that are not shown running above: jq, the stop.
	var jq, stop string
	for line := range strings.Lines(text) {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "$ "); ok {
			switch {
			case strings.Contains(c, "| jq "):
				jq = c
			case strings.HasPrefix(c, "kill "):
				stop = c
			}
		}
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Errorf("jq is not installed (.ci/run installs it): cannot run %q", jq)
	} else if jq == "" {
		t.Errorf("cmd/handoff/README.md: no $ … | jq line in the session")
	} else {
		out, err := exec.Command("/bin/sh", "-c", shRewrite(r, jq)).Output()
		if err != nil || !strings.HasPrefix(string(out), `{"pid":`+strconv.Itoa(p.pid)+",") {
			t.Errorf("%s: %q %v", jq, out, err)
		}
	}
	for _, c := range backticked(text, "kill -INT ") {
		stop = c // the prose's: the session shows none
	}
	if stop == "" {
		t.Fatal("cmd/handoff/README.md: no kill -INT … to stop the session")
	}
	if out, err := exec.Command("/bin/sh", "-c", shRewrite(r, stop)).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", stop, err, out)
	}
	p.strict = true
	if code := p.wait(); code != 0 {
		t.Errorf("handoff exited with %d after %s, want 0", code, stop)
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pid file after the stop: %v, want it removed", err)
	}
}

// shRewrite rewrites a shell command line's words with r, handoff being the
// built one.
func shRewrite(r *rewriter, line string) string {
	line = strings.ReplaceAll(line, "handoff ", bins.handoff+" ")
	for from, to := range r.paths {
		line = strings.ReplaceAll(line, from, to)
	}
	return line
}

// TestDocsReadmeExample runs README.md's example commands: the example on
// a -listen address with the curl line against it, under a notify socket
// to know when it is ready, and its worker alone under
// systemd-socket-activate.
func TestDocsReadmeExample(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed: apt-get install curl (.ci/run installs it)")
	}
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed: apt-get install systemd (.ci/run installs it)")
	}
	checkFds(t)
	text := readDoc(t, "README.md")
	r := newRewriter(t)
	r.paths["./example"] = bins.example
	var example, get []string
	for _, line := range shBlocks(text) {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "go run ./example -listen "):
			example = r.argv(f[3:])
		case f[0] == "curl":
			get = f[1:]
		}
	}
	if example == nil || len(get) == 0 {
		t.Fatal("README.md: no go run ./example -listen … or no curl line")
	}
	manager := listenNotify(t)
	defer manager.Close()
	p := startProc(t, bins.example, example, "NOTIFY_SOCKET="+manager.LocalAddr().String())
	waitNotify(t, manager, p.pid, "READY=1")
	for i, a := range get {
		if rest, ok := strings.CutPrefix(a, "http://"); ok {
			host, path, _ := strings.Cut(rest, "/")
			get[i] = "http://" + r.addr(host) + "/" + path
		}
	}
	out, err := exec.Command(curl, get...).Output()
	if err != nil || !strings.HasPrefix(string(out), "HTTP/1.1 200") ||
		!strings.Contains(string(out), "X-Worker-Pid: ") || !strings.Contains(string(out), "X-Generation: 1") {
		t.Errorf("curl %s: %v\n%s", strings.Join(get, " "), err, out)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("the example exited with %d after SIGTERM, want 0", code)
	}

	alone := backticked(text, "systemd-socket-activate ")
	if len(alone) != 1 {
		t.Fatalf("README.md: %d systemd-socket-activate lines, the test knows 1", len(alone))
	}
	args := r.argv(strings.Fields(alone[0])[1:])
	addr := args[slices.Index(args, "-l")+1]
	w := startProc(t, activate, args)
	w.waitLine("Listening on " + addr)
	if code := statusCode(t, "http://"+addr+"/"); code != 200 {
		t.Errorf("GET from the worker under %s: %d, want 200", alone[0], code)
	}
	if code := w.stop(); code != 0 {
		t.Errorf("the worker exited with %d after SIGTERM, want 0", code)
	}
}

// shortTempDir is a temporary directory removed at the test's end, with a
// short path: t.TempDir's holds the test's name, and a control socket under
// it went past the 107 bytes a unix socket's path may have (CI's GOTMPDIR,
// TestDocsReadmeUnits/cmd/handoff/README.md: 108).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "docs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

package main

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	for _, c := range []struct {
		line string
		want command
	}{
		{"status\n", command{op: opStatus}},
		{"status", command{op: opStatus}},
		{"status\r\n", command{op: opStatus}},
		{"  reload \t\n", command{op: opReload}},
		{"upgrade\n", command{op: opUpgrade}},
		{"scale 3\n", command{op: opScale, workers: 3}},
		{"scale\t007\n", command{op: opScale, workers: 7}},
		{"scale 4096\n", command{op: opScale, workers: maxWorkers}},
		{"scale 0\n", command{op: opScale, workers: 0}},
		{"scale +2\n", command{op: opScale, workers: 2, relative: true}},
		{"scale -1\n", command{op: opScale, workers: -1, relative: true}},
	} {
		got, err := parseCommand([]byte(c.line))
		if err != nil || got != c.want {
			t.Errorf("parseCommand(%q) = %+v, %v; want %+v", c.line, got, err, c.want)
		}
	}
	for _, c := range []struct{ line, want string }{
		{"", "empty request"},
		{" \n", "empty request"},
		{"STATUS\n", `unknown command "STATUS"`},
		{"stop\n", `unknown command "stop"`},
		{"status now\n", `status takes no argument, got "now"`},
		{"reload 2\n", "reload takes no argument"},
		{"scale\n", "scale takes one argument"},
		{"scale 1 2\n", "scale takes one argument"},
		{"scale 4097\n", "out of range"},
		{"scale -4097\n", "out of range"},
		{"scale +-1\n", "want a whole number"},
		{"scale -\n", "want a whole number"},
		{"scale two\n", "want a whole number"},
		{"scale 1e3\n", "want a whole number"},
		{"scale 99999999999999999999\n", "want a whole number"},
		{"status\x00\n", "byte 0x00 at offset 6"},
		{"stat\xc3\xbcs\n", "byte 0xc3 at offset 4"},
		{"status\n\n", "byte 0x0a at offset 6"},
		{strings.Repeat("a", maxRequestLine+1), "longer than 256 bytes"},
	} {
		_, err := parseCommand([]byte(c.line))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseCommand(%q): %v; want an error with %q", c.line, err, c.want)
		}
	}
}

// FuzzParseCommand: any input either parses into a well-formed command
// whose request line parses back to it, or gives a short, printable error.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"status\n", "reload\n", "upgrade\n", "scale 3\n", "scale 0\n", "scale +1\n", "scale -1\n", "scale -0\n", " scale\t12 \r\n",
		"scale 4097", "stop\n", "status extra\n", "\x00", "scale 99999999999\n", strings.Repeat("scale ", 50)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := parseCommand(line)
		if err != nil {
			msg := err.Error()
			if msg == "" || len(msg) > 200 || !utf8.ValidString(msg) || strings.ContainsAny(msg, "\x00\n\r") {
				t.Fatalf("parseCommand(%q): error %q: want a short printable message", line, msg)
			}
			return
		}
		switch {
		case c.op == opScale && (c.workers < -maxWorkers || c.workers > maxWorkers || !c.relative && c.workers < 0):
			t.Fatalf("parseCommand(%q) = %+v: workers out of range", line, c)
		case c.op != opScale && c.workers != 0:
			t.Fatalf("parseCommand(%q) = %+v: workers set for %s", line, c, c.op)
		case c.op < opStatus || c.op > opScale:
			t.Fatalf("parseCommand(%q) = %+v: no such op", line, c)
		}
		again, err := parseCommand([]byte(c.String() + "\n"))
		if err != nil || again != c {
			t.Fatalf("parseCommand(%q) = %+v, whose line %q parses to %+v, %v", line, c, c.String(), again, err)
		}
	})
}

func TestParseClient(t *testing.T) {
	cfg, err := parseClient(opScale, []string{"-pidfile", "/run/a.pid", "4", "-json"})
	if err != nil || cfg.workers != 4 || cfg.pidfile != "/run/a.pid" || !cfg.json {
		t.Errorf("parseClient(scale -pidfile /run/a.pid 4 -json) = %+v, %v", cfg, err)
	}
	cfg, err = parseClient(opStatus, []string{"-control", "/run/c.sock"})
	if err != nil || cfg.control != "/run/c.sock" || cfg.timeout <= 0 {
		t.Errorf("parseClient(status -control /run/c.sock) = %+v, %v", cfg, err)
	}
}

func TestParseServe(t *testing.T) {
	cfg, err := parseServe([]string{"-listen", "web=tcp://127.0.0.1:8080", "-listen", "unix://@admin", "-workers", "4",
		"-ready", "delay:2s", "-pidfile", "rel.pid", "--", "gunicorn", "-w", "1", "app:app"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.listen) != 2 || cfg.workers != 4 || cfg.ready.s != "delay:2s" || !strings.HasSuffix(cfg.pidfile, "/rel.pid") ||
		strings.Join(cfg.command, " ") != "gunicorn -w 1 app:app" {
		t.Errorf("parseServe: %+v", cfg)
	}
	cfg, err = parseServe([]string{"-listen", ":8080", "server"})
	if err != nil || cfg.workers != 1 || cfg.ready.s != "start" || cfg.stopSignal.s != "TERM" || cfg.logFormat != "" {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
}

// TestHelpDocumentsEveryFlag: handoff -h shows every flag, each with an
// example.
func TestHelpDocumentsEveryFlag(t *testing.T) {
	var sc serveConfig
	cc := clientConfig{op: opStatus}
	check := func(name string) {
		i := strings.Index(helpText, "\n  -"+name+" ")
		if i < 0 {
			i = strings.Index(helpText, "\n  -"+name+"\n")
		}
		if i < 0 {
			t.Errorf("help does not document -%s", name)
			return
		}
		block := helpText[i+1:]
		if j := strings.Index(block[1:], "\n  -"); j >= 0 {
			block = block[:j+1]
		}
		if !strings.Contains(block, "e.g. ") {
			t.Errorf("help for -%s has no example:\n%s", name, block)
		}
	}
	serveFlags(&sc).VisitAll(func(f *flag.Flag) { check(f.Name) })
	clientFlags(&cc).VisitAll(func(f *flag.Flag) { check(f.Name) })
}

// TestReadmeTablesEveryFlag: the flag table of cmd/handoff/README.md names
// every flag of the supervisor, and names no flag that does not exist.
func TestReadmeTablesEveryFlag(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var sc serveConfig
	fs := serveFlags(&sc)
	tabled := map[string]bool{}
	inTable := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "| flag |"):
			inTable = true
			continue
		case !strings.HasPrefix(line, "|"):
			inTable = false
		}
		if !inTable || strings.HasPrefix(line, "| ---") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`-([a-z0-9-]+)").FindAllStringSubmatch(first, -1) {
			tabled[m[1]] = true
			if fs.Lookup(m[1]) == nil {
				t.Errorf("README.md's flag table names -%s, which handoff does not have", m[1])
			}
		}
	}
	if len(tabled) == 0 {
		t.Fatal("README.md has no flag table (a row after \"| flag |\")")
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !tabled[f.Name] && !strings.Contains(string(b), "`-"+f.Name+"` is its old name") {
			t.Errorf("README.md's flag table lacks -%s", f.Name)
		}
	})
}

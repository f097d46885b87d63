package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Bounds on installing the peers.
const (
	aptUpdateTimeout  = 3 * time.Minute
	aptInstallTimeout = 4 * time.Minute
)

// peerSpec is a peer found on the PATH or at a fixed Debian path, from a
// Debian package.
type peerSpec struct {
	name      string
	fallback  string   // where Debian puts it, if not on the PATH (/usr/sbin for nginx)
	packages  []string // candidates, the first that apt knows is installed
	version   []string // arguments that print the version
	versionRe *regexp.Regexp
}

var peerSpecs = []peerSpec{
	{"gunicorn", "/usr/bin/gunicorn", []string{"gunicorn"}, []string{"--version"},
		regexp.MustCompile(`gunicorn \(version ([^)]+)\)`)},
	{"nginx", "/usr/sbin/nginx", []string{"nginx-light", "nginx"}, []string{"-v"},
		regexp.MustCompile(`nginx/(\S+)`)},
}

func (s peerSpec) find() string {
	if p, err := exec.LookPath(s.name); err == nil {
		return p
	}
	if fi, err := os.Stat(s.fallback); err == nil && fi.Mode()&0o111 != 0 {
		return s.fallback
	}
	return ""
}

// ensurePeers finds gunicorn and nginx, installing the missing ones with
// apt-get unless told not to. A peer that cannot be had is returned
// without a path and with the reason.
func (h *harness) ensurePeers(ctx context.Context) []peer {
	var missing []peerSpec
	for _, s := range peerSpecs {
		if s.find() == "" {
			missing = append(missing, s)
		}
	}
	how := map[string]string{}
	if len(missing) > 0 {
		why := h.install(ctx, missing)
		for _, s := range missing {
			how[s.name] = why
		}
	}
	var out []peer
	for _, s := range peerSpecs {
		p := peer{name: s.name, path: s.find(), how: "already installed"}
		if w, ok := how[s.name]; ok {
			p.how = w
		}
		if p.path == "" {
			h.logf("%s: skipped: %s", s.name, p.how)
			out = append(out, p)
			continue
		}
		vctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		b, _ := exec.CommandContext(vctx, p.path, s.version...).CombinedOutput()
		cancel()
		if m := s.versionRe.FindSubmatch(b); m != nil {
			p.version = string(m[1])
		}
		h.logf("%s %s at %s (%s)", s.name, p.version, p.path, p.how)
		out = append(out, p)
	}
	return out
}

// install runs apt-get update and apt-get install for the missing peers
// and says what it did, or why it could not.
func (h *harness) install(ctx context.Context, missing []peerSpec) string {
	if h.cfg.noInstall {
		return "not installed, and -no-install was given"
	}
	if os.Geteuid() != 0 {
		return "not installed, and the harness is not root, so it cannot apt-get install it"
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil {
		return "not installed, and there is no apt-get on this machine"
	}
	h.logf("installing %d missing peers: apt-get update", len(missing))
	if out, err := h.apt(ctx, aptUpdateTimeout, apt, "update"); err != nil {
		return fmt.Sprintf("apt-get update failed: %v: %s", err, lastLine(out))
	}
	var pkgs []string
	for _, s := range missing {
		pkgs = append(pkgs, h.pick(ctx, s.packages))
	}
	h.logf("apt-get install -y %s", strings.Join(pkgs, " "))
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if out, err := h.apt(ctx, aptInstallTimeout, apt, args...); err != nil {
		return fmt.Sprintf("apt-get install %s failed: %v: %s", strings.Join(pkgs, " "), err, lastLine(out))
	}
	return "installed by `apt-get install -y " + strings.Join(pkgs, " ") + "`"
}

// pick returns the first package apt knows of, or the last candidate.
func (h *harness) pick(ctx context.Context, candidates []string) string {
	cache, err := exec.LookPath("apt-cache")
	if err != nil {
		return candidates[len(candidates)-1]
	}
	for _, c := range candidates {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, cache, "policy", c).Output()
		cancel()
		if err == nil && strings.Contains(string(out), "Candidate:") && !strings.Contains(string(out), "Candidate: (none)") {
			return c
		}
	}
	return candidates[len(candidates)-1]
}

func (h *harness) apt(ctx context.Context, d time.Duration, apt string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cmd := exec.CommandContext(ctx, apt, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// build compiles the example and the Go peers into dir. The bench module
// requires the main module (replaced by ../), so this works from anywhere
// inside bench/.
func build(ctx context.Context, dir string) (binaries, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"github.com/handoff-dev/handoff/example",
		"github.com/handoff-dev/handoff/bench/peers/goserver",
		"github.com/handoff-dev/handoff/bench/peers/tableflip")
	if out, err := cmd.CombinedOutput(); err != nil {
		return binaries{}, fmt.Errorf("go build (run from inside bench/): %w\n%s", err, out)
	}
	b := binaries{
		example:   filepath.Join(dir, "example"),
		goserver:  filepath.Join(dir, "goserver"),
		tableflip: filepath.Join(dir, "tableflip"),
	}
	b.reusePort = hasFlag(ctx, b.example, "reuseport")
	return b, nil
}

// binaries are the programs build made.
type binaries struct {
	example, goserver, tableflip string
	reusePort                    bool // the example takes -reuseport (a socket per worker slot)
}

// hasFlag tells whether the program lists -name in its -h usage (Go's flag
// package prints every flag there).
func hasFlag(ctx context.Context, bin, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput() // -h exits 0, or 2 in older flag packages
	return regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b`).Match(out)
}

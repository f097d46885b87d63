package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/internal/proctree"
)

// mount2 finds where the cgroup v2 hierarchy is mounted, from
// /proc/self/mountinfo (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
// v1/v2 hybrid), and the cgroup path its root shows.
func mount2() (mount, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		return unescapeMount(f[4]), unescapeMount(f[3]), nil
	}
	if err := sc.Err(); err != nil {
		return "", "", err
	}
	return "", "", errors.New("no cgroup2 mount in /proc/self/mountinfo")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ofPid returns the cgroup v2 path of pid ("0::/path" in
// /proc/PID/cgroup); "self" for this process.
func ofPid(pid string) (string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if p, ok := bytes.CutPrefix(l, []byte("0::")); ok {
			return string(p), nil
		}
	}
	return "", fmt.Errorf("/proc/%s/cgroup: no cgroup v2 line", pid)
}

// Dir returns the directory of pid's v2 cgroup.
func Dir(pid string) (string, error) {
	mount, root, err := mount2()
	if err != nil {
		return "", err
	}
	p, err := ofPid(pid)
	if err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(p, root)
	if !ok || strings.HasSuffix(p, " (deleted)") {
		return "", fmt.Errorf("cgroup %s is outside the cgroup2 mount at %s", p, mount)
	}
	return filepath.Join(mount, rel), nil
}

// MakeBase makes handoff-<pid> in this process's v2 cgroup. It is
// there already after an upgrade (the pid is kept).
func MakeBase() (string, error) {
	own, err := Dir("self")
	if err != nil {
		return "", fmt.Errorf("cgroups: %w", err)
	}
	base := filepath.Join(own, "handoff-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(base, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("cgroups: %w", err)
	}
	if _, err := os.Stat(filepath.Join(base, "cgroup.kill")); err != nil {
		os.Remove(base)
		return "", fmt.Errorf("cgroups: no cgroup.kill (kernel 5.14+): %w", err)
	}
	return base, nil
}

// Make makes a worker's cgroup and opens it for CLONE_INTO_CGROUP.
func Make(dir string) (*os.File, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	return f, nil
}

// Members lists the processes in the cgroup dir; none if it is gone.
func Members(dir string) []proctree.Proc {
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []proctree.Proc
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			if p, ok := proctree.Stat(pid); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

// Kill sends SIGKILL to every process in the cgroup dir and below.
func Kill(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
}

// Remove removes an empty cgroup (EBUSY while anything is in it).
func Remove(dir string) error { return unix.Rmdir(dir) }

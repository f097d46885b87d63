package listener

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestParseListenEnv(t *testing.T) {
	const pid = 1234
	for _, tc := range []struct {
		fds, names, lpid string
		want             []string
	}{
		{"1", "", "1234", []string{"unknown"}},
		{"2", "", "1234", []string{"unknown", "unknown"}},
		{"2", "web:admin", "1234", []string{"web", "admin"}},
		{"3", "a::c", "1234", []string{"a", "unknown", "c"}},
		{"1", "my name", "1234", []string{"my name"}},
		{"02", "a:b", "01234", []string{"a", "b"}},
	} {
		n, names, err := parseListenEnv(pid, tc.fds, tc.names, tc.lpid)
		if err != nil || n != len(tc.want) || !slices.Equal(names, tc.want) {
			t.Errorf("parseListenEnv(%d, %q, %q, %q) = %d, %q, %v; want %d, %q, nil",
				pid, tc.fds, tc.names, tc.lpid, n, names, err, len(tc.want), tc.want)
		}
	}
}

func TestParseListenEnvErrors(t *testing.T) {
	const pid = 1234
	for _, tc := range []struct {
		fds, names, lpid string
		is               error
		want             string
	}{
		{"", "", "", ErrNoListeners, "LISTEN_FDS not set"},
		{"", "web", "1234", ErrNoListeners, "LISTEN_FDS not set"},
		{"1", "", "", ErrNoListeners, "LISTEN_PID is not"},
		{"1", "", "999", ErrNoListeners, "LISTEN_PID=999 is another process (this is 1234)"},
		{"abc", "", "999", ErrNoListeners, "another process"}, // not for us, so not checked
		{"1", "", "abc", ErrBadEnv, `LISTEN_PID="abc"`},
		{"1", "", "0", ErrBadEnv, `LISTEN_PID="0"`},
		{"1", "", "-1234", ErrBadEnv, `LISTEN_PID="-1234"`},
		{"1", "", "99999999999999999999999", ErrBadEnv, "LISTEN_PID="},
		{"abc", "", "1234", ErrBadEnv, `LISTEN_FDS="abc"`},
		{"-1", "", "1234", ErrBadEnv, `LISTEN_FDS="-1"`},
		{"+1", "", "1234", ErrBadEnv, `LISTEN_FDS="+1"`},
		{" 1", "", "1234", ErrBadEnv, `LISTEN_FDS=" 1"`},
		{"0", "", "1234", ErrNoListeners, "LISTEN_FDS=0"},
		{"99999999999999999999999", "", "1234", ErrBadEnv, "LISTEN_FDS="},
		{"65537", "", "1234", ErrBadEnv, "LISTEN_FDS=65537 is more than 65536"},
		{"2", "web", "1234", ErrBadEnv, "has 1 names for LISTEN_FDS=2"},
		{"1", "web:admin", "1234", ErrBadEnv, "has 2 names for LISTEN_FDS=1"},
		{"1", ":", "1234", ErrBadEnv, "has 2 names"},
	} {
		n, names, err := parseListenEnv(pid, tc.fds, tc.names, tc.lpid)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) || n != 0 || names != nil {
			t.Errorf("parseListenEnv(%d, %q, %q, %q) = %d, %q, %v; want an error wrapping %q and containing %q",
				pid, tc.fds, tc.names, tc.lpid, n, names, err, tc.is, tc.want)
		}
	}
}

func FuzzListenEnv(f *testing.F) {
	f.Add(1234, "1", "", "1234")
	f.Add(1234, "2", "web:admin", "1234")
	f.Add(1234, "3", "a::c", "1234")
	f.Add(1234, "1", "", "999")
	f.Add(1234, "0", "", "1234")
	f.Add(1234, "abc", "x", "1234")
	f.Add(1234, "65536", "", "1234")
	f.Add(1, "1", ":", "1")
	f.Add(-1, "1", "", "")
	f.Fuzz(func(t *testing.T, pid int, fds, names, lpid string) {
		n, got, err := parseListenEnv(pid, fds, names, lpid)
		if err != nil {
			if errors.Is(err, ErrNoListeners) == errors.Is(err, ErrBadEnv) {
				t.Fatalf("error %q wraps neither or both of ErrNoListeners and ErrBadEnv", err)
			}
			if n != 0 || got != nil {
				t.Fatalf("error %q came with n=%d names=%q", err, n, got)
			}
			return
		}
		if n < 1 || n > maxFds || len(got) != n {
			t.Fatalf("n=%d with %d names", n, len(got))
		}
		for _, name := range got {
			if name == "" || strings.Contains(name, ":") {
				t.Fatalf("bad name %q in %q", name, got)
			}
		}
		if lpid == "" || fds == "" {
			t.Fatalf("accepted LISTEN_FDS=%q LISTEN_PID=%q", fds, lpid)
		}
	})
}

func TestEnv(t *testing.T) {
	if env := Env(nil); env != nil {
		t.Errorf("Env(nil) = %q, want nil", env)
	}
	socks := []*Socket{{name: "web"}, {name: "unknown"}, {name: "admin"}}
	env := Env(socks)
	want := []string{"LISTEN_FDS=3", "LISTEN_FDNAMES=web:unknown:admin"}
	if !slices.Equal(env, want) {
		t.Fatalf("Env = %q, want %q", env, want)
	}
	// What Env writes, the parser reads back.
	_, fds, _ := strings.Cut(env[0], "=")
	_, names, _ := strings.Cut(env[1], "=")
	n, got, err := parseListenEnv(42, fds, names, "42")
	if err != nil || n != 3 || !slices.Equal(got, []string{"web", "unknown", "admin"}) {
		t.Errorf("parseListenEnv of Env's output = %d, %q, %v", n, got, err)
	}
}

func TestLookup(t *testing.T) {
	ls := []Inherited{{Name: "web"}, {Name: "admin"}, {Name: "web"}}
	ls[0].Listener, ls[1].Listener = nopListener(1), nopListener(2)
	if l, ok := Lookup(ls, "web"); !ok || l != nopListener(1) {
		t.Errorf(`Lookup("web") = %v, %v; want the first`, l, ok)
	}
	if l, ok := Lookup(ls, "admin"); !ok || l != nopListener(2) {
		t.Errorf(`Lookup("admin") = %v, %v`, l, ok)
	}
	if l, ok := Lookup(ls, "nope"); ok || l != nil {
		t.Errorf(`Lookup("nope") = %v, %v; want nil, false`, l, ok)
	}
}

// nopListener is a net.Listener value to tell apart in Lookup's test; it is never used.
type nopListener int

func (nopListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (nopListener) Close() error              { return nil }
func (nopListener) Addr() net.Addr            { return nil }

package listener

import (
	"strings"
	"testing"
)

var validAddrs = []struct {
	in        string
	want      Addr
	canonical string
}{
	{"tcp://127.0.0.1:8080", Addr{"", "tcp", "127.0.0.1:8080"}, "tcp://127.0.0.1:8080"},
	{"web=tcp://:8080", Addr{"web", "tcp", ":8080"}, "web=tcp://:8080"},
	{":8080", Addr{"", "tcp", ":8080"}, "tcp://:8080"},
	{"api=:0", Addr{"api", "tcp", ":0"}, "api=tcp://:0"},
	{"localhost:80", Addr{"", "tcp", "localhost:80"}, "tcp://localhost:80"},
	{"tcp://my-host_1.example.com:80", Addr{"", "tcp", "my-host_1.example.com:80"}, ""},
	{"tcp4://0.0.0.0:80", Addr{"", "tcp4", "0.0.0.0:80"}, "tcp4://0.0.0.0:80"},
	{"tcp6://[::1]:80", Addr{"", "tcp6", "[::1]:80"}, "tcp6://[::1]:80"},
	{"tcp6://[0:0::1]:0080", Addr{"", "tcp6", "[::1]:80"}, "tcp6://[::1]:80"},
	{"[fe80::1%eth0]:443", Addr{"", "tcp", "[fe80::1%eth0]:443"}, "tcp://[fe80::1%eth0]:443"},
	{"tcp://[localhost]:80", Addr{"", "tcp", "localhost:80"}, "tcp://localhost:80"},
	{"tcp://:65535", Addr{"", "tcp", ":65535"}, "tcp://:65535"},
	{"unix:///run/app.sock", Addr{"", "unix", "/run/app.sock"}, "unix:///run/app.sock"},
	{"admin=unix://rel/app.sock", Addr{"admin", "unix", "rel/app.sock"}, "admin=unix://rel/app.sock"},
	{"unix://@handoff", Addr{"", "unix", "@handoff"}, "unix://@handoff"},
	{"unix:///tmp/a=b", Addr{"", "unix", "/tmp/a=b"}, "unix:///tmp/a=b"},
	{"x=unix:///tmp/a=b://c", Addr{"x", "unix", "/tmp/a=b://c"}, "x=unix:///tmp/a=b://c"},
	{"my name=tcp://:1", Addr{"my name", "tcp", ":1"}, "my name=tcp://:1"},
	{strings.Repeat("n", 255) + "=:1", Addr{strings.Repeat("n", 255), "tcp", ":1"}, ""},
	{"unix:///" + strings.Repeat("p", 106), Addr{"", "unix", "/" + strings.Repeat("p", 106)}, ""},
	{"unix://@" + strings.Repeat("p", 107), Addr{"", "unix", "@" + strings.Repeat("p", 107)}, ""},
}

func TestParseAddr(t *testing.T) {
	for _, tc := range validAddrs {
		got, err := ParseAddr(tc.in)
		if err != nil {
			t.Errorf("ParseAddr(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseAddr(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
		if tc.canonical != "" && got.String() != tc.canonical {
			t.Errorf("ParseAddr(%q).String() = %q, want %q", tc.in, got.String(), tc.canonical)
		}
		again, err := ParseAddr(got.String())
		if err != nil || again != got {
			t.Errorf("ParseAddr(%q) = %#v, %v; want %#v (round trip of %q)", got.String(), again, err, got, tc.in)
		}
	}
}

func TestParseAddrErrors(t *testing.T) {
	long := strings.Repeat("p", 107)
	for _, tc := range []struct{ in, want string }{
		{"", "empty address"},
		{"web=", "empty address"},
		{"udp://:53", `unknown scheme "udp"`},
		{"TCP://:80", `unknown scheme "TCP"`},
		{"tcp://localhost", "missing port"},
		{"localhost:", "missing port"},
		{"/tmp/x.sock", "unix:///tmp/x.sock"},
		{"tcp://:http", `bad port "http"`},
		{"tcp://:65536", `bad port "65536"`},
		{"tcp://:-1", `bad port "-1"`},
		{"tcp://:+1", `bad port "+1"`},
		{"tcp://::1:80", "brackets"},
		{"tcp://[::1:80", "missing ']'"},
		{"tcp4://[::1]:80", "not an IPv4 address"},
		{"tcp6://127.0.0.1:80", "not an IPv6 address"},
		{"tcp://ho st:80", `bad host "ho st"`},
		{"tcp://a/b:80", `bad host "a/b"`},
		{"tcp://" + strings.Repeat("h.", 127) + ":80", "at most 253"},
		{"tcp://a..b:80", `bad host "a..b"`},
		{"tcp://-a:80", `bad host "-a"`},
		{"tcp://" + strings.Repeat("h", 64) + ":80", "bad host"},
		{"0.0.0:80", `bad IPv4 address "0.0.0"`},
		{"256.1.1.1:80", `bad IPv4 address "256.1.1.1"`},
		{"01.2.3.4:80", `bad IPv4 address "01.2.3.4"`},
		{"unix://", "empty unix socket path"},
		{"unix://@", "empty abstract"},
		{"unix:///" + long, "sun_path holds 107"},
		{"unix://@" + long + "p", "sun_path holds 108"},
		{"unix:///tmp/a\x00b", "NUL"},
		{"=tcp://:80", "empty name"},
		{"a:b=tcp://:80", "':'"},
		{strings.Repeat("n", 256) + "=:80", "at most 255"},
		{"w\x01=tcp://:80", "printable ASCII"},
		{"w\xff=tcp://:80", "printable ASCII"},
	} {
		_, err := ParseAddr(tc.in)
		if err == nil {
			t.Errorf("ParseAddr(%q) succeeded, want an error with %q", tc.in, tc.want)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "listener: address ") || !strings.Contains(msg, tc.want) {
			t.Errorf("ParseAddr(%q) = %q, want it to start with \"listener: address\" and contain %q", tc.in, msg, tc.want)
		}
	}
}

func TestAddrValidate(t *testing.T) {
	for _, a := range []Addr{
		{Network: "", Address: ":80"},
		{Network: "udp", Address: ":80"},
		{Network: "tcp", Address: "nohost"},
		{Network: "unix", Address: ""},
		{Name: "a=b", Network: "tcp", Address: ":80"},
		{Name: "a:b", Network: "tcp", Address: ":80"},
	} {
		if err := a.validate(); err == nil {
			t.Errorf("%#v.validate() = nil, want an error", a)
		}
	}
	for _, tc := range validAddrs {
		if err := tc.want.validate(); err != nil {
			t.Errorf("%#v.validate() = %v", tc.want, err)
		}
	}
}

// FuzzParseAddr checks that ParseAddr never panics, that what it accepts is valid, and that
// String gives back an address that parses to the same value.
func FuzzParseAddr(f *testing.F) {
	for _, tc := range validAddrs {
		f.Add(tc.in)
	}
	for _, s := range []string{"", "=", "a=b=c", "tcp://", "unix://@", "tcp://[fe80::1%]:1", "x=unix://a=b", "[::ffff:1.2.3.4]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "listener: address ") {
				t.Fatalf("ParseAddr(%q) error %q lacks the prefix", s, err)
			}
			return
		}
		if err := a.validate(); err != nil {
			t.Fatalf("ParseAddr(%q) = %#v, which does not validate: %v", s, a, err)
		}
		again, err := ParseAddr(a.String())
		if err != nil {
			t.Fatalf("ParseAddr(%q) = %#v; its String %q does not parse: %v", s, a, a.String(), err)
		}
		if again != a {
			t.Fatalf("ParseAddr(%q) = %#v; its String %q parses to %#v", s, a, a.String(), again)
		}
	})
}

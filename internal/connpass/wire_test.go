package connpass

import (
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, m := range []Msg{
		{Kind: KindServe, Addrs: []string{"[::]:8080", "/run/app.sock"}},
		{Kind: KindServe},
		{Kind: KindHand, ID: 1, Addr: "127.0.0.1:80"},
		{Kind: KindConn, ID: 1<<64 - 1, Addr: "[::]:8080", Returned: true},
		{Kind: KindAck, ID: 7, OK: true},
		{Kind: KindAck, ID: 8},
		{Kind: KindDone, ID: 9},
	} {
		b, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", m, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", m, err)
		}
		m.Fd = -1
		if !reflect.DeepEqual(got, m) {
			t.Errorf("Decode(Encode(%+v)) = %+v", m, got)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	long := strings.Repeat("x", MaxAddr+1)
	for _, tc := range []struct {
		m    Msg
		want string
	}{
		{Msg{Kind: 'Z'}, "unknown message"},
		{Msg{Kind: KindHand, ID: 1}, "empty address"},
		{Msg{Kind: KindHand, Addr: long}, "at most 512"},
		{Msg{Kind: KindDone, OK: true}, "OK set"},
		{Msg{Kind: KindHand, Addr: "a", Returned: true}, "Returned set"},
		{Msg{Kind: KindAck, Addr: "a"}, "with an address"},
		{Msg{Kind: KindConn, Addr: "a", Addrs: []string{"b"}}, "list of addresses"},
		{Msg{Kind: KindServe, Addrs: make([]string, MaxAddrs+1)}, "65 addresses"},
		{Msg{Kind: KindServe, Addrs: []string{""}}, "empty address"},
	} {
		_, err := tc.m.Encode()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Encode(%+v) = %v, want an error containing %q", tc.m, err, tc.want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := Msg{Kind: KindHand, ID: 3, Addr: "127.0.0.1:1"}.Encode()
	withVersion := func(v byte) []byte { b := append([]byte(nil), good...); b[1] = v; return b }
	withFlags := func(f byte) []byte { b := append([]byte(nil), good...); b[2] = f; return b }
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "shorter than its 13-byte header"},
		{"version", withVersion(2), "version 2, want 1"},
		{"flags", withFlags(0x80), "unknown flags"},
		{"flag of another kind", withFlags(flagOK), "OK set"},
		{"cut", good[:len(good)-1], "has 11 bytes, 10 left"},
		{"trailing", append(append([]byte(nil), good...), 0), "1 bytes after"},
		{"no addr", func() []byte { b, _ := Msg{Kind: KindServe}.Encode(); b[0] = byte(KindHand); return b }(), "0 addresses, want 1"},
		{"addr on ack", func() []byte { b := append([]byte(nil), good...); b[0] = byte(KindAck); return b }(), "1 addresses, want none"},
		{"unknown", func() []byte { b := append([]byte(nil), good...); b[0] = 'Q'; return b }(), "unknown message"},
		{"huge", make([]byte, MaxMsg+1), "at most 8192"},
	} {
		_, err := Decode(tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Decode = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecode: Decode never panics, and what it accepts encodes back to the
// same bytes.
func FuzzDecode(f *testing.F) {
	for _, m := range []Msg{
		{Kind: KindServe, Addrs: []string{"[::]:8080", "/run/app.sock"}},
		{Kind: KindHand, ID: 1, Addr: "127.0.0.1:80"},
		{Kind: KindConn, ID: 2, Addr: "x", Returned: true},
		{Kind: KindAck, ID: 7, OK: true},
		{Kind: KindDone, ID: 9},
	} {
		b, _ := m.Encode()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if m.Fd != -1 {
			t.Fatalf("Decode gave fd %d", m.Fd)
		}
		back, err := m.Encode()
		if err != nil {
			t.Fatalf("Decode accepted %q as %+v, which does not encode: %v", b, m, err)
		}
		if string(back) != string(b) {
			t.Fatalf("Decode(%q) = %+v, encodes as %q", b, m, back)
		}
	})
}

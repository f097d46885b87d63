package metrics

import "testing"

func TestParseNetstat(t *testing.T) {
	in := []byte("TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 21\nIpExt: InNoRoutes ListenOverflows\nIpExt: 1 99\n")
	if n, ok := parseNetstat(in, "TcpExt", "ListenOverflows"); !ok || n != 17 {
		t.Errorf("ListenOverflows: %d, %v; want 17", n, ok)
	}
	for _, bad := range []string{"", "TcpExt: A ListenOverflows\nTcpExt: 1\n", "TcpExt: ListenOverflows\nTcpExt: x\n", "TcpExt: A\nTcpExt: 1\n"} {
		if n, ok := parseNetstat([]byte(bad), "TcpExt", "ListenOverflows"); ok {
			t.Errorf("%q: %d, want no value", bad, n)
		}
	}
	if _, ok := listenOverflows(); !ok {
		t.Error("no ListenOverflows in this machine's /proc/net/netstat")
	}
}

// FuzzParseNetstat: any input gives a value or none, never a panic.
func FuzzParseNetstat(f *testing.F) {
	f.Add([]byte("TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 0 17\n"))
	f.Add([]byte("TcpExt: ListenOverflows\n"))
	f.Add([]byte("TcpExt:\nTcpExt:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseNetstat(b, "TcpExt", "ListenOverflows")
	})
}

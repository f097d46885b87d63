package listener

import (
	"os"
	"path/filepath"
	"testing"
)

// TestUnlink: the file of a unix socket goes once nobody listens on it, and
// only then; any other file at the path, and abstract names, are left.
func TestUnlink(t *testing.T) {
	dir := t.TempDir()
	a := Addr{Network: "unix", Address: filepath.Join(dir, "s.sock")}
	sock, err := Listen(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := Unlink(a); err != nil {
		t.Fatalf("Unlink of a live socket: %v", err)
	}
	if _, err := os.Lstat(a.Address); err != nil {
		t.Fatalf("Unlink removed a socket that is listened on: %v", err)
	}
	if err := sock.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(a.Address); err != nil {
		t.Fatalf("Close removed the socket file: %v", err)
	}
	if err := Unlink(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(a.Address); !os.IsNotExist(err) {
		t.Fatalf("after Unlink: %v, want the file gone", err)
	}
	if err := Unlink(a); err != nil {
		t.Fatalf("Unlink of a missing file: %v", err)
	}

	plain := Addr{Network: "unix", Address: filepath.Join(dir, "plain")}
	if err := os.WriteFile(plain.Address, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Unlink(plain); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(plain.Address); err != nil {
		t.Fatalf("Unlink removed a file that is not a socket: %v", err)
	}
	for _, other := range []Addr{{Network: "unix", Address: "@abstract"}, {Network: "tcp", Address: "127.0.0.1:1"}} {
		if err := Unlink(other); err != nil {
			t.Errorf("Unlink(%v): %v", other, err)
		}
	}
}

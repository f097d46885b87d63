package handover

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(helpers[name]())
	}
	goleak.VerifyTestMain(m)
}

// helperEnv names the helper the test binary runs as, re-executed.
const helperEnv = "HANDOFF_TEST_HELPER"

var helpers = map[string]func() int{}

func TestEncodeDecode(t *testing.T) {
	for _, st := range []State{
		{},
		{Table: []byte(`{"Generation":3}`)},
		{Table: bytes.Repeat([]byte("x"), 1<<20), Signals: []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM, 64}},
	} {
		got, err := Decode(Encode(st))
		if err != nil {
			t.Fatalf("Decode(Encode(%d bytes, %v)): %v", len(st.Table), st.Signals, err)
		}
		if !bytes.Equal(got.Table, st.Table) || !slices.Equal(got.Signals, st.Signals) {
			t.Fatalf("Decode(Encode(%d bytes, %v)) = %d bytes, %v", len(st.Table), st.Signals, len(got.Table), got.Signals)
		}
	}
}

// TestDecodeRefuses: a state of another version, truncated, corrupt or
// with bytes after it is an error, never a state.
func TestDecodeRefuses(t *testing.T) {
	good := Encode(State{Table: []byte(`{"Generation":3}`), Signals: []syscall.Signal{syscall.SIGHUP}})
	other := slices.Clone(good)
	binary.BigEndian.PutUint32(other[len(magic):], Version+1)
	if _, err := Decode(other); !errors.Is(err, ErrVersion) {
		t.Errorf("a state of version %d: %v, want ErrVersion", Version+1, err)
	}
	for n := range len(good) {
		if _, err := Decode(good[:n]); err == nil {
			t.Errorf("the first %d bytes of %d decode", n, len(good))
		}
	}
	for i := range good {
		bad := slices.Clone(good)
		bad[i] ^= 0x40
		if _, err := Decode(bad); err == nil {
			t.Errorf("byte %d flipped decodes", i)
		}
	}
	if _, err := Decode(append(slices.Clone(good), 0)); err == nil {
		t.Error("a trailing byte decodes")
	}
	if _, err := Decode([]byte(`{"Generation":3}`)); err == nil {
		t.Error("a state of the old kind (JSON alone) decodes")
	}
}

// FuzzDecode: Decode reads bytes another program wrote. It never panics,
// and what it accepts is exactly what Encode writes.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(magic))
	f.Add(Encode(State{}))
	f.Add(Encode(State{Table: []byte(`{"Workers":[{"Pid":12}]}`), Signals: []syscall.Signal{1, 15}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Decode(b)
		if err != nil {
			return
		}
		if again := Encode(st); !bytes.Equal(again, b) {
			t.Fatalf("Decode accepted %x, which Encode writes as %x", b, again)
		}
	})
}

package supervisor

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/internal/handover"
)

// TestUpgradeStateRefused: a state this program cannot read (another
// version, truncated, not JSON, or JSON without the table's descriptors)
// is an error before anything of it is used, and the variable is gone.
func TestUpgradeStateRefused(t *testing.T) {
	good := handover.Encode(handover.State{Table: []byte(`{"Generation":1}`)})
	other := slices.Clone(good)
	other[11]++ // the version's last byte
	for _, tc := range []struct {
		name  string
		state []byte
		want  string
	}{
		{"another version", other, "version 2, this program reads 1"},
		{"truncated", good[:len(good)-1], "checksum"},
		{"not JSON", handover.Encode(handover.State{Table: []byte("garbage")}), "invalid character"},
		{"no descriptors", good, "notify fd 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := unix.Write(fd, tc.state); err != nil {
				t.Fatal(err)
			}
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
				t.Fatal(err)
			}
			t.Setenv(envUpgradeState, strconv.Itoa(fd))
			st, err := takeUpgradeState()
			if st != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("takeUpgradeState: %+v, %v; want an error saying %q", st, err, tc.want)
			}
			if Resuming() {
				t.Errorf("still resuming after the state was refused")
			}
		})
	}
}

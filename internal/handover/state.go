package handover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"syscall"

	"github.com/handoff-dev/handoff/internal/early"
)

// EnvState names the variable that gives the new program the number of
// the descriptor its state is on.
const EnvState = early.EnvUpgradeState

// Version is the format of the state this program writes, and the only one
// it reads.
const Version = 1

// State is what one program hands the next.
type State struct {
	// Table is the supervisor's worker table, as the supervisor encodes it.
	Table []byte
	// Signals were received and not handled yet, oldest first.
	Signals []syscall.Signal
}

// ErrVersion is wrapped by Decode's error for a state of another version.
var ErrVersion = errors.New("upgrade state of another version")

// The encoding, big-endian: magic, version (4 bytes), the table's length
// (8) and the table, the number of signals (4) and one byte each, then the
// CRC-32C of all that (4). The magic and the version come first in every
// version, so that any program can tell a state it cannot read.
const (
	magic   = "handoff\x00"
	headLen = len(magic) + 4 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode encodes st. Signals are numbered from 1 to 255.
func Encode(st State) []byte {
	b := make([]byte, 0, headLen+len(st.Table)+4+len(st.Signals)+4)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint32(b, Version)
	b = binary.BigEndian.AppendUint64(b, uint64(len(st.Table)))
	b = append(b, st.Table...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(st.Signals)))
	for _, s := range st.Signals {
		b = append(b, byte(s))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Decode decodes what Encode encoded; the table it returns is a slice of
// b. It checks the version before anything else.
func Decode(b []byte) (State, error) {
	if len(b) < len(magic)+4 || string(b[:len(magic)]) != magic {
		return State{}, errors.New("upgrade state: not one (no magic)")
	}
	if v := binary.BigEndian.Uint32(b[len(magic):]); v != Version {
		return State{}, fmt.Errorf("upgrade state: version %d, this program reads %d: %w", v, Version, ErrVersion)
	}
	truncated := fmt.Errorf("upgrade state: truncated (%d bytes)", len(b))
	if len(b) < headLen+4+4 {
		return State{}, truncated
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return State{}, errors.New("upgrade state: checksum mismatch")
	}
	n := binary.BigEndian.Uint64(body[len(magic)+4:])
	rest := body[headLen:]
	if n > uint64(len(rest)-4) {
		return State{}, truncated
	}
	st := State{Table: rest[:n:n]}
	rest = rest[n:]
	nsig := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(nsig) != uint64(len(rest)) {
		return State{}, fmt.Errorf("upgrade state: %d signals in %d bytes", nsig, len(rest))
	}
	for _, s := range rest {
		if s == 0 {
			return State{}, errors.New("upgrade state: signal 0")
		}
		st.Signals = append(st.Signals, syscall.Signal(s))
	}
	return st, nil
}

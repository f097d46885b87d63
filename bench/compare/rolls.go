package main

import (
	"encoding/json"
	"time"
)

// The supervisor's log lines that start and end a roll; both carry the
// roll's generation.
const (
	msgRolling      = "rolling"
	msgRollComplete = "roll complete"
)

// rollCount is what a supervisor's log says of its rolls over a run: how
// many started and how long each completed one took, from its own
// `rolling` line to the `roll complete` of the same generation. Signals
// beyond the rolls started were folded: a SIGHUP during a roll is queued,
// and every SIGHUP queued behind one roll shares the next.
type rollCount struct {
	started int
	took    []time.Duration // one per completed roll, in order of completion
}

// countRolls reads a supervisor's log lines. A `roll complete` whose
// `rolling` came before the lines is not counted: its start is unknown.
func countRolls(lines []logLine) rollCount {
	var rc rollCount
	began := map[uint64]time.Time{}
	for _, ln := range lines {
		var ev struct {
			Msg        string `json:"msg"`
			Generation uint64 `json:"generation"`
		}
		if json.Unmarshal([]byte(ln.text), &ev) != nil || ev.Generation == 0 {
			continue
		}
		switch ev.Msg {
		case msgRolling:
			if _, dup := began[ev.Generation]; !dup {
				began[ev.Generation] = ln.at
				rc.started++
			}
		case msgRollComplete:
			if at, ok := began[ev.Generation]; ok {
				rc.took = append(rc.took, ln.at.Sub(at))
				delete(began, ev.Generation)
			}
		}
	}
	return rc
}

// folded is how many of signals were folded into another's roll.
func (rc rollCount) folded(signals int) int { return max(signals-rc.started, 0) }

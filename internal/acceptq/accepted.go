package acceptq

import (
	"os"

	"github.com/handoff-dev/handoff/internal/proctree"
	"github.com/handoff-dev/handoff/listener"
)

// TreeAccepted is Accepted for pid and the processes of its tree (package
// internal/proctree; pid alone if the tree cannot be listed): a server's
// master may leave the accepting to its children.
func TreeAccepted(pid int, socks []*listener.Socket) (bool, error) {
	pids := []int{pid}
	if procs, err := proctree.Scan(); err == nil {
		for _, p := range proctree.Tree(procs, os.Getpid(), map[int]bool{pid: true}, map[int]bool{pid: true}) {
			pids = append(pids, p.Pid)
		}
	}
	return Accepted(pids, socks)
}

package proctree

// Proc is what the tree walk needs of one process, from /proc/PID/stat.
type Proc struct {
	Pid, PPid, Pgid int
	Start           uint64 // start time in clock ticks since boot: tells a pid's reuse
}

// Tree returns the processes that belong to the trees of roots: their
// descendants by parent; the members of the process groups in groups (a
// worker leads its own group, so this finds the part of its tree whose parent
// died, unless it called setsid), and the descendants of those. Roots and self
// are left out.
func Tree(procs []Proc, self int, roots, groups map[int]bool) []Proc {
	kids := make(map[int][]Proc, len(procs))
	for _, p := range procs {
		kids[p.PPid] = append(kids[p.PPid], p)
	}
	seen := map[int]bool{self: true}
	var out []Proc
	var walk func(p Proc)
	walk = func(p Proc) {
		if seen[p.Pid] {
			return
		}
		seen[p.Pid] = true
		if !roots[p.Pid] {
			out = append(out, p)
		}
		for _, k := range kids[p.Pid] {
			walk(k)
		}
	}
	for _, p := range procs {
		if roots[p.Pid] {
			walk(p)
		}
	}
	for _, p := range procs {
		if groups[p.Pgid] && p.Pgid != self {
			walk(p)
		}
	}
	return out
}

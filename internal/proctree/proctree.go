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
	return NewIndex(procs, self).Tree(roots, groups)
}

// An Index is a list of processes indexed by pid, parent and process group,
// made once, so that the trees of many roots are walked without a pass over
// the whole list for each: a walk costs what it finds.
type Index struct {
	self    int
	byPid   map[int]Proc
	kids    map[int][]Proc // by parent
	members map[int][]Proc // by process group
}

// NewIndex indexes procs; self, the calling process, is never part of a
// tree, nor is its process group walked.
func NewIndex(procs []Proc, self int) *Index {
	ix := &Index{
		self:    self,
		byPid:   make(map[int]Proc, len(procs)),
		kids:    make(map[int][]Proc, len(procs)),
		members: make(map[int][]Proc),
	}
	for _, p := range procs {
		ix.byPid[p.Pid] = p
		ix.kids[p.PPid] = append(ix.kids[p.PPid], p)
		if p.Pgid != self {
			ix.members[p.Pgid] = append(ix.members[p.Pgid], p)
		}
	}
	return ix
}

// Len is the number of processes indexed.
func (ix *Index) Len() int { return len(ix.byPid) }

// Tree is the package's Tree over the indexed processes.
func (ix *Index) Tree(roots, groups map[int]bool) []Proc {
	seen := map[int]bool{ix.self: true}
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
		for _, k := range ix.kids[p.Pid] {
			walk(k)
		}
	}
	for pid := range roots {
		if p, ok := ix.byPid[pid]; ok {
			walk(p)
		}
	}
	for g := range groups {
		for _, p := range ix.members[g] {
			walk(p)
		}
	}
	return out
}

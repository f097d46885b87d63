package supervisor

// Published returns how many snapshots the run goroutine has published
// for Stats (see publish): for the tests of their pace.
func (s *Supervisor) Published() int64 { return s.nPub.Load() }

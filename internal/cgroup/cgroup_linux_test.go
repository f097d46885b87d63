package cgroup

import (
	"os"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/sys/fs/cgroup`:       "/sys/fs/cgroup",
		`/mnt/with\040space`:   "/mnt/with space",
		`/a\134b`:              `/a\b`,
		`/short\04`:            `/short\04`,
		`/not\999octal\011tab`: "/not\\999octal\ttab",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMembersOfOwnCgroup finds this process among the members of its own cgroup, where there
// is a cgroup v2 hierarchy to look in.
func TestMembersOfOwnCgroup(t *testing.T) {
	dir, err := Dir("self")
	if err != nil {
		t.Skipf("no cgroup v2 for this process: %v", err)
	}
	for _, p := range Members(dir) {
		if p.Pid == os.Getpid() {
			return
		}
	}
	t.Errorf("Members(%s) does not list this process, %d", dir, os.Getpid())
}

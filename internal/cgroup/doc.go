// Package cgroup makes and ends the cgroups (v2) a supervisor puts its workers in: a base
// "handoff-<pid>" under the supervisor's own cgroup (MakeBase), one directory per worker opened
// for CLONE_INTO_CGROUP (Make), the processes a cgroup holds however they left the worker's
// tree (Members), cgroup.kill (Kill) and removal once empty (Remove). The v2 hierarchy is found
// in /proc/self/mountinfo, never assumed at /sys/fs/cgroup: a v1/v2 hybrid mounts it elsewhere.
package cgroup

// Package proctree finds the processes of a worker's tree and watches them: it reads /proc to
// list processes with their parent, process group and start time (Scan, Stat), walks the trees
// of given roots and groups (Tree), and holds a process through a pidfd, which can neither be
// fooled by a reused pid nor block a thread: Open checks the start time, Signal sends through
// the pidfd, and Wait parks in the netpoller until the process has exited.
//
// Which processes are worth watching, and when to stop them, is the supervisor's business.
package proctree

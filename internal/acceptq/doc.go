// Package acceptq samples the accept queues of listening sockets and tells which are not
// served. The kernel reports a queue's length and backlog through TCP_INFO for TCP and
// sock_diag (UNIX_DIAG_RQLEN) for unix stream sockets (Sample); a queue that stays non-empty
// without going down while workers say they are ready is not served (Watch): a server that
// ignores LISTEN_FDS keeps fd 3 open and never accepts, and its clients wait in the kernel.
package acceptq

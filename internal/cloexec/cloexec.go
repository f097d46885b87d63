// Package cloexec marks descriptors that came through an exec
// close-on-exec again: the liveness pipe a worker inherits, the sockets and
// pipes an in-place upgrade hands to the new program. Once taken over, they
// are this process's own and must not leak into its children.
package cloexec

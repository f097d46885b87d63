// Package orphans finds and ends what a benchmark left behind. The
// harnesses are child subreapers, so a process that outlived its subject
// becomes their child; Sweep kills and reaps every child. Linux only.
package orphans

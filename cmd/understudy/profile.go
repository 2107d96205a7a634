//go:build profile

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"syscall"
)

// A build with -tags profile (for benchmarks, never a release) writes a
// CPU profile of the command to $UNDERSTUDY_CPU_PROFILE, its allocations to
// $UNDERSTUDY_MEM_PROFILE, and its peak RSS and CPU time to stderr, as
// restic's profile builds do (bench/devbench.sh reads them).
func startProfile() func() {
	path := os.Getenv("UNDERSTUDY_CPU_PROFILE")
	var f *os.File
	if path != "" {
		var err error
		if f, err = os.Create(path); err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "understudy: cpu profile:", err)
			f = nil
		}
	}
	return func() {
		if f != nil {
			pprof.StopCPUProfile()
			f.Close()
		}
		if path := os.Getenv("UNDERSTUDY_MEM_PROFILE"); path != "" {
			if mf, err := os.Create(path); err == nil {
				pprof.Lookup("allocs").WriteTo(mf, 0)
				mf.Close()
			}
		}
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
			fmt.Fprintf(os.Stderr, "understudy: peak RSS %d KiB, CPU user %.2f s sys %.2f s\n", ru.Maxrss,
				float64(ru.Utime.Nano())/1e9, float64(ru.Stime.Nano())/1e9)
		}
	}
}

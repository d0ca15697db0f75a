package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ's tick, the unit of /proc/PID/stat's times.
const clockTick = 10 * time.Millisecond

// ProcessCPU is the CPU time (utime+stime, all threads) process pid has
// used, at /proc's resolution of one clock tick: on a loaded machine it
// varies less than wall time.
func ProcessCPU(pid int) (time.Duration, error) {
	name := fmt.Sprintf("/proc/%d/stat", pid)
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	// Fields after the command name, which ends with the last ')'.
	end := strings.LastIndexByte(string(data), ')')
	if end < 0 || end+2 > len(data) {
		return 0, fmt.Errorf("cpu time of pid %d: %s has no command name", pid, name)
	}
	f := strings.Fields(string(data[end+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time of pid %d: %s has %d fields", pid, name, len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu time of pid %d: utime %q, stime %q in %s", pid, f[11], f[12], name)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

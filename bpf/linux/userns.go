package linux

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// UserNamespaceRoot reports whether this process runs in a user namespace
// other than the initial one and, if so, the host uid its uid 0 maps to
// (-1 when uid 0 is not mapped). It reads /proc/self/uid_map, whose one
// line in the initial namespace maps every uid to itself.
func UserNamespaceRoot() (nested bool, hostUID int64, err error) {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false, 0, fmt.Errorf("read user namespace map: %w", err)
	}
	hostUID = -1
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "0" && f[2] == "4294967295" {
			return false, 0, nil
		}
		if f[0] == "0" {
			if hostUID, err = strconv.ParseInt(f[1], 10, 64); err != nil {
				return true, -1, fmt.Errorf("read user namespace map: %q: %w", line, err)
			}
		}
	}
	return true, hostUID, nil
}

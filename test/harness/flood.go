package harness

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"syscall"
)

// Flood is the body of a test binary run as a connect flooder: args are
// "N ADDR:PORT [PORTS]". It runs N TCP connects to an IPv4 address on one
// socket, cycling over PORTS ports from PORT (default 1), prints how many
// were refused with EPERM, and returns the exit code: 2 for bad args, 1
// when no socket can be made.
func Flood(args []string) int {
	if len(args) == 2 {
		args = append(args, "1")
	}
	if len(args) != 3 {
		fmt.Fprintf(os.Stderr, "flood: want N IPV4:PORT [PORTS], got %q\n", args)
		return 2
	}
	count, err := strconv.Atoi(args[0])
	ap, err2 := netip.ParseAddrPort(args[1])
	ports, err3 := strconv.Atoi(args[2])
	if err != nil || err2 != nil || err3 != nil || ports < 1 || !ap.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "flood:", err, err2, err3)
		return 2
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		return 1
	}
	defer syscall.Close(fd)
	sa := &syscall.SockaddrInet4{Addr: ap.Addr().As4()}
	refused := 0
	for i := range count {
		sa.Port = int(ap.Port()) + i%ports
		// A refused connect leaves the socket unconnected, so it can retry.
		if syscall.Connect(fd, sa) == syscall.EPERM {
			refused++
		}
	}
	fmt.Println(refused)
	return 0
}

// Command noopengine answers every request on its socket at once as if it
// had registered a container, and does nothing else: holdfast-oci-hook run
// against it costs its own process and the round trip, without the
// engine's work. The hook benchmark runs it beside the real engine.
//
//	noopengine SOCKET
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
)

// The answers to a registration and to a poststop run.
const (
	registered   = `{"container":{"id":"noop","cgroupId":1,"policies":["noop"]}}` + "\n"
	unregistered = `{"removed":{"id":"noop"}}` + "\n"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: noopengine SOCKET")
		os.Exit(2)
	}
	l, err := net.Listen("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			line, err := bufio.NewReader(c).ReadBytes('\n') // a state of any size
			if err != nil {
				return
			}
			// A hooks.d entry's one command line serves every stage, so a
			// poststop run is told by its state.
			if bytes.Contains(line, []byte(`"stage":"poststop"`)) || bytes.Contains(line, []byte(`"status":"stopped"`)) {
				c.Write([]byte(unregistered))
			} else {
				c.Write([]byte(registered))
			}
		}()
	}
}

// Command holdfast-oci-hook registers a container with the holdfast engine
// from an OCI runtime hook (createContainer or createRuntime) and
// unregisters it at poststop. The runtime passes the OCI state on stdin;
// the stage comes from --stage. Settings are read from
// holdfast-oci-hook.json next to the binary; flags override it.
//
// This process takes the fast path only (package fastpath): the run handed
// whole to the engine. Anything else it hands to the holdfast binary's
// full hook by exec.
package main

import (
	"os"
	"time"

	"github.com/holdfast-dev/holdfast/hook/fastpath"
)

func main() {
	start := time.Now()
	code, handoff := fastpath.Run(start, os.Args[1:], os.Stdin, os.Stderr)
	if handoff != nil {
		code = handoff.Fail(handoff.Exec(), os.Stderr)
	}
	os.Exit(code)
}

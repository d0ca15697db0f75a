// Command emptyhook is the floor for an OCI hook written in Go: it reads
// the state from stdin and exits. The hook benchmark runs it beside
// holdfast-oci-hook.
package main

import (
	"io"
	"os"
)

func main() {
	io.Copy(io.Discard, os.Stdin)
}

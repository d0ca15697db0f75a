// Package ocihook reads what an OCI runtime hands a hook — the state on
// stdin and the bundle's config.json — and the container identity in their
// annotations (CRI-O's and containerd's keys).
//
// holdfast-oci-hook (hook/) and the engine import it: the hook forwards the
// state it was given and the engine turns it into a registration, or, while
// the engine cannot be reached, the hook does that itself. It imports only
// engine/api and bpf/linux.
package ocihook

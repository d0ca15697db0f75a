// Package hook is the OCI hook's full run: one run registers one container
// with the engine before its first instruction (stage createContainer or
// createRuntime) or unregisters it (poststop). A run reads the OCI state from
// stdin, hands it whole to the engine and, when the engine does not take it,
// reads the bundle's config.json, resolves the container's cgroup v2 ID,
// builds its identity from runtime annotations, registers through the
// engine's older request or without the engine (the slow path), and turns
// any failure into a decision under the configured fail mode, all within one
// deadline. Each step is a small function that can be tested on its own.
//
// The hook is two processes' work. holdfast-oci-hook runs only the fast path
// (hook/fastpath, which links little: every container start pays for what
// its binary initialises) and, for anything else, becomes "holdfast
// oci-hook" by exec, which runs Main. hook/hooksd and the holdfast command
// import this package. It imports only engine/api (and its subpackages),
// bpf/cgroup and its own subpackages.
package hook

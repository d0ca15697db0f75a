// Package hook is holdfast-oci-hook's logic: one run registers one container
// with the engine before its first instruction (stage createContainer or
// createRuntime) or unregisters it (poststop). A run reads the OCI state from
// stdin and the bundle's config.json, resolves the container's cgroup v2 ID,
// builds its identity from runtime annotations, calls the engine, and turns
// any failure into a decision under the configured fail mode, all within one
// deadline. Each step is a small function that can be tested on its own.
//
// The holdfast-oci-hook binary, hook/hooksd and the holdfast command import
// it. It imports only engine/api (and its subpackages) and bpf/cgroup.
package hook

// Package registrar holds the settings both registrars (the OCI hook and the
// NRI plugin) share: the fail policy (whether a container the engine cannot
// register may start anyway; the engine's own namespace always may, so a
// fail-closed node can still start holdfast itself), the fail-open namespace
// list and the engine namespace.
//
// hook/, nri-plugin/ and the holdfast command's installers import it; the
// engine daemon does not. Of this module it imports only bpf/linux, so the
// OCI hook's fast path, which links neither package net nor the protocol's
// client, can check the same settings. It also
// holds what both installers (holdfast install crio|containerd) report:
// Change, written by EnsureFile and RemoveFile.
package registrar

import (
	"errors"
	"fmt"
	"slices"
)

// FailMode says what a failed registration does to container creation.
type FailMode string

// Modes. The zero FailMode means FailOpen, the default.
const (
	FailOpen   FailMode = "open"   // log and let the container start unregistered
	FailClosed FailMode = "closed" // refuse the container, with the reason in the runtime's error
)

const failModeOpen = "fail mode is open"

// Where a registrar finds the engine's state on a production node, to
// register a container itself while the engine is down, and the holdfast
// binary that does it (next to the registrar's own binary, else in PATH).
const (
	DefaultStateDir    = "/var/lib/holdfast"
	DefaultBPFDir      = "/sys/fs/bpf/holdfast"
	HoldfastBinaryName = "holdfast"
)

// DefaultEngineNamespace is where holdfast itself runs.
const DefaultEngineNamespace = "holdfast-system"

// ParseFailMode accepts "open" and "closed".
func ParseFailMode(s string) (FailMode, error) {
	switch m := FailMode(s); m {
	case FailOpen, FailClosed:
		return m, nil
	}
	return "", fmt.Errorf("unknown fail mode %q (want %s or %s)", s, FailOpen, FailClosed)
}

// Settings is one registrar's answer to an engine that cannot register a
// container. The hook's config file and the NRI plugin's configuration embed
// it, so both spell the keys the same.
type Settings struct {
	FailMode FailMode `json:"failMode,omitempty"`
	// FailOpenNamespaces fail open even when FailMode is FailClosed.
	FailOpenNamespaces []string `json:"failOpenNamespaces,omitempty"`
	// EngineNamespace always fails open; empty means no namespace is the
	// engine's, so registrars fill it, usually with DefaultEngineNamespace.
	EngineNamespace string `json:"engineNamespace,omitempty"`
}

// WithDefaults fills an empty mode with FailOpen and an empty engine
// namespace with DefaultEngineNamespace.
func (s Settings) WithDefaults() Settings {
	if s.FailMode == "" {
		s.FailMode = FailOpen
	}
	if s.EngineNamespace == "" {
		s.EngineNamespace = DefaultEngineNamespace
	}
	return s
}

// Validate rejects an unknown mode and empty namespace names; an empty mode
// is the default.
func (s Settings) Validate() error {
	if s.FailMode != "" {
		if _, err := ParseFailMode(string(s.FailMode)); err != nil {
			return err
		}
	}
	if slices.Contains(s.FailOpenNamespaces, "") {
		return errors.New("fail-open namespaces contain an empty name")
	}
	return nil
}

// FailsOpen reports whether a container in namespace may start although the
// engine could not register it, and why. An empty namespace (a container
// outside Kubernetes) has only the mode to go by.
func (s Settings) FailsOpen(namespace string) (open bool, why string) {
	switch {
	case namespace != "" && namespace == s.EngineNamespace:
		return true, fmt.Sprintf("namespace %s is the engine's own", namespace)
	case namespace != "" && slices.Contains(s.FailOpenNamespaces, namespace):
		return true, fmt.Sprintf("namespace %s is in the fail-open list", namespace)
	case s.FailMode == FailOpen || s.FailMode == "":
		return true, failModeOpen
	case s.FailMode == FailClosed:
		return false, "fail mode is closed"
	}
	// Validate rejects this; refusing is the safe reading of a mode nobody
	// can name.
	return false, fmt.Sprintf("fail mode %q is unknown", s.FailMode)
}

// Decide is FailsOpen for a registration that failed; cannotEnforce says
// the engine answered that it cannot enforce the container's policies
// (errors.Is(err, api.ErrCannotEnforce): they do not compile, a map is
// full, its registry cannot be written). Such a container is refused even
// in fail-open mode: failing open is for an engine that cannot be reached,
// and letting it run would let a workload switch enforcement off by
// exhausting the engine. The engine's namespace and the fail-open
// namespaces still start.
func (s Settings) Decide(namespace string, cannotEnforce bool) (open bool, why string) {
	open, why = s.FailsOpen(namespace)
	if open && cannotEnforce && why == failModeOpen {
		return false, "the engine answered that it cannot enforce the container's policies (fail-open covers only an unreachable engine)"
	}
	return open, why
}

package bpf

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// ProbeOutcome is what a feature probe found.
type ProbeOutcome int

const (
	// Supported: the feature works here.
	Supported ProbeOutcome = iota
	// Unsupported: the kernel refused it; the fallback is the right mode.
	Unsupported
	// Inconclusive: the probe could not tell; holdfast takes the fallback.
	Inconclusive
)

func (o ProbeOutcome) String() string {
	switch o {
	case Supported:
		return "supported"
	case Unsupported:
		return "unsupported"
	case Inconclusive:
		return "inconclusive"
	}
	return fmt.Sprintf("ProbeOutcome(%d)", int(o))
}

// ProbeResult is a probe's outcome and why.
type ProbeResult struct {
	Outcome ProbeOutcome
	Reason  string
}

// Err returns nil when the feature is supported and otherwise an error
// carrying the reason, for callers that report a skip or a fallback.
func (r ProbeResult) Err() error {
	if r.Outcome == Supported {
		return nil
	}
	return fmt.Errorf("%s: %s", r.Outcome, r.Reason)
}

// lsmListPath lists the active LSMs when securityfs is mounted.
const lsmListPath = "/sys/kernel/security/lsm"

// ProbeLSM reports whether BPF LSM programs (lsm/bprm_check_security) can
// deny exec here. The kernel does not change under a running process, so the
// first answer is kept.
func ProbeLSM() ProbeResult { return probeLSMOnce() }

var probeLSMOnce = sync.OnceValue(probeLSM)

func probeLSM() ProbeResult {
	active, listErr := activeLSMs()
	if listErr == nil && !slices.Contains(active, "bpf") {
		return ProbeResult{Unsupported, fmt.Sprintf("bpf is not an active LSM (%s)", strings.Join(active, ","))}
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "holdfast_probe",
		Type:       ebpf.LSM,
		AttachType: ebpf.AttachLSMMac,
		AttachTo:   "bprm_check_security",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	switch {
	case errors.Is(err, os.ErrPermission):
		// cilium/ebpf's hint about MEMLOCK does not apply: the kernel
		// accounts BPF memory to cgroups and refuses this program type.
		return ProbeResult{Unsupported, "the kernel refused to load an lsm/bprm_check_security program: operation not permitted"}
	case errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, errors.ErrUnsupported) || errors.Is(err, btf.ErrNotFound):
		return ProbeResult{Unsupported, fmt.Sprintf("load lsm/bprm_check_security: %v", err)}
	case err != nil:
		return ProbeResult{Inconclusive, fmt.Sprintf("load lsm/bprm_check_security: %v", err)}
	}
	prog.Close()
	if listErr != nil {
		// A loaded LSM program only runs if bpf is in the lsm= list.
		return ProbeResult{Inconclusive, fmt.Sprintf("lsm programs load but the active LSMs are unknown: %v", listErr)}
	}
	return ProbeResult{Supported, "lsm/bprm_check_security loads and bpf is an active LSM"}
}

func activeLSMs() ([]string, error) {
	data, err := os.ReadFile(lsmListPath)
	if err != nil {
		return nil, fmt.Errorf("read active LSMs: %w", err)
	}
	return strings.Split(strings.TrimSpace(string(data)), ","), nil
}

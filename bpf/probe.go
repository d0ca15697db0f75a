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

// lsmListPath lists the active LSMs when securityfs is mounted.
const lsmListPath = "/sys/kernel/security/lsm"

// HaveLSM reports whether BPF LSM programs (lsm/bprm_check_security) can
// deny exec here, in cilium/ebpf's convention: nil when they can, an error
// wrapping ebpf.ErrNotSupported when the kernel refuses them, and any other
// error when the probe could not tell (holdfast then takes the fallback
// too). The kernel does not change under a running process, so the first
// answer is kept.
func HaveLSM() error { return haveLSMOnce() }

var haveLSMOnce = sync.OnceValue(func() error { return haveLSM(btf.NewCache()) })

// haveLSM is HaveLSM's probe; kernelTypes lets the caller share one parse of
// the kernel's BTF (tens of ms) with its other loads.
func haveLSM(kernelTypes *btf.Cache) error {
	active, listErr := activeLSMs()
	if listErr == nil && !slices.Contains(active, "bpf") {
		return fmt.Errorf("bpf is not an active LSM (%s): %w", strings.Join(active, ","), ebpf.ErrNotSupported)
	}
	prog, err := loadWithCache(kernelTypes, &ebpf.ProgramSpec{
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
		return fmt.Errorf("the kernel refused to load an lsm/bprm_check_security program: operation not permitted: %w", ebpf.ErrNotSupported)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("load lsm/bprm_check_security: %w", err)
	case errors.Is(err, errors.ErrUnsupported) || errors.Is(err, btf.ErrNotFound):
		return fmt.Errorf("load lsm/bprm_check_security: %w: %w", ebpf.ErrNotSupported, err)
	case err != nil:
		return fmt.Errorf("inconclusive: load lsm/bprm_check_security: %w", err)
	}
	prog.Close()
	if listErr != nil {
		// A loaded LSM program only runs if bpf is in the lsm= list.
		return fmt.Errorf("inconclusive: lsm programs load but the active LSMs are unknown: %w", listErr)
	}
	return nil
}

// loadWithCache loads one program as ebpf.NewProgram does, but finds its
// attach target in kernelTypes (NewProgram parses the kernel's BTF anew).
func loadWithCache(kernelTypes *btf.Cache, spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{spec.Name: spec}},
		ebpf.CollectionOptions{Cache: kernelTypes})
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram(spec.Name), nil
}

// lsmVerdict describes HaveLSM's answer for Controls.
func lsmVerdict(err error) string {
	switch {
	case err == nil:
		return "BPF LSM supported: lsm/bprm_check_security loads and bpf is an active LSM"
	case errors.Is(err, ebpf.ErrNotSupported):
		return "BPF LSM unsupported: " + strings.TrimSuffix(err.Error(), ": "+ebpf.ErrNotSupported.Error())
	}
	return "BPF LSM probe " + err.Error()
}

func activeLSMs() ([]string, error) {
	data, err := os.ReadFile(lsmListPath)
	if err != nil {
		return nil, fmt.Errorf("read active LSMs: %w", err)
	}
	return strings.Split(strings.TrimSpace(string(data)), ","), nil
}

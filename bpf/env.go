package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
)

// MapProcessEnvs holds captured environments (LRU, keyed by tgid like
// MapProcesses); its capacity is set apart from the process table's.
const MapProcessEnvs = holdfastMapProcessEnvs

// capture_config flags (env.h).
const (
	captureEnvFlag = 1 << 0 // PROC_CAPTURE_ENV
	envCutFlag     = 1 << 0 // PROC_ENV_CUT
)

// SetEnvCapture turns environment capture on or off: on, the exec
// tracking copies each new image's environment of a registered container
// (up to 1023 bytes, EnvCut beyond) into MapProcessEnvs and Process
// returns it. The switch is pinned: it holds for the programs until an
// engine sets it again.
func (e *Enforcer) SetEnvCapture(on bool) error {
	var c holdfastProcessConfig
	if on {
		c.Flags = captureEnvFlag
	}
	if err := e.maps.CaptureConfig.Put(uint32(0), c); err != nil {
		return fmt.Errorf("set environment capture to %t in map %s: %w", on, holdfastMapCaptureConfig, err)
	}
	e.captureEnv.Store(on)
	return nil
}

// EnvCapture reports the switch as the programs see it.
func (e *Enforcer) EnvCapture() (bool, error) {
	var c holdfastProcessConfig
	if err := e.maps.CaptureConfig.Lookup(uint32(0), &c); err != nil {
		return false, fmt.Errorf("read map %s: %w", holdfastMapCaptureConfig, err)
	}
	return c.Flags&captureEnvFlag != 0, nil
}

// processEnv fills p's environment from MapProcessEnvs when capture is on
// and the entry is p's (not a stale one of an earlier process with its
// pid).
func (e *Enforcer) processEnv(p *Process) error {
	if !e.captureEnv.Load() {
		return nil
	}
	var raw holdfastProcessEnv
	if err := e.maps.ProcessEnvs.Lookup(p.PID, &raw); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("look up environment of process %d in %s: %w", p.PID, holdfastMapProcessEnvs, err)
	}
	if raw.StartNs != p.StartNs {
		return nil
	}
	p.Env, p.EnvCut = decodeNULList(raw.Env[:], int(raw.EnvLen)), raw.Flags&envCutFlag != 0
	return nil
}

// decodeNULList splits the first n bytes of a NUL-separated list (argv,
// environ) as the programs copied it.
func decodeNULList(raw []int8, n int) []string {
	n = min(n, len(raw))
	b := make([]byte, n)
	for i := range n {
		b[i] = byte(raw[i])
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(bytes.TrimSuffix(b, []byte{0})), "\x00")
}

// dropEnv deletes pid's environment with its table entry.
func (e *Enforcer) dropEnv(pid uint32) error {
	if err := e.maps.ProcessEnvs.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete environment of process %d from %s: %w", pid, holdfastMapProcessEnvs, err)
	}
	return nil
}

// Package pinned reads an engine's pinned BPF maps in tests: what the kernel
// enforces, as opposed to what the engine reports. Apart from harness, which
// the bpf package's own tests import.
package pinned

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/holdfast-dev/holdfast/bpf"
)

// CgroupEntry reads the cgroup_rules entry of cgroupID pinned under bpfDir
// (an engine's --bpf-dir): ruleset ID and flags, raw; ok is false when
// there is none.
func CgroupEntry(t testing.TB, bpfDir string, cgroupID uint64) (value []byte, ok bool) {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(bpf.Layout{Root: bpfDir}.Pin(bpf.KindMap, bpf.MapCgroupRules), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("open the engine's pinned cgroup map: %v", err)
	}
	defer m.Close()
	value = make([]byte, m.ValueSize())
	err = m.Lookup(cgroupID, value)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("look up cgroup %d: %v", cgroupID, err)
	}
	return value, true
}

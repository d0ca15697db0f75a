package harness

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/holdfast-dev/holdfast/bpf"
)

// CgroupEntry reads the engine's pinned cgroup_rules entry of cgroupID:
// what the kernel enforces for it (ruleset ID and flags, raw), not what the
// engine says; ok is false when there is none.
func (e *Engine) CgroupEntry(t testing.TB, cgroupID uint64) (value []byte, ok bool) {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(bpf.Layout{Root: e.BPFDir}.Pin(bpf.KindMap, bpf.MapCgroupRules), &ebpf.LoadPinOptions{ReadOnly: true})
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

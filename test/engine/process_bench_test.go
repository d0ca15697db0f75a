package engine_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// BenchmarkEngineRSS measures the engine's resident memory with 10,000
// registered containers and 100,000 entries in the process table, after it
// described process events through the table and counted the table for status.
// The engine keeps nothing per process: it reads the pinned table per event.
// Table entries past the real processes are written straight into the
// pinned map (each a distinct pid of a registered container).
//
//	go test -run '^$' -bench EngineRSS -benchtime 1x ./test/engine/
func BenchmarkEngineRSS(b *testing.B) {
	const containers, processes = 10000, 100000
	e := harness.StartEngine(b, harness.Options{
		Policies: map[string]string{"lockdown.yaml": processPolicy("/nonexistent/denied")},
		Args:     []string{"--max-processes", "131072", "--max-cgroups", "16384"},
	})
	client := e.Client()
	ctx := context.Background()
	cgroups := make([]harness.Cgroup, containers)
	for i := range cgroups {
		cgroups[i] = harness.NewCgroup(b)
		ctr := api.Container{ID: fmt.Sprintf("c%d", i), CgroupID: cgroups[i].ID, Namespace: "shop", Name: "main"}
		if _, err := client.Register(ctx, ctr); err != nil {
			b.Fatalf("register %d: %v", i, err)
		}
	}
	table, err := ebpf.LoadPinnedMap(bpf.Layout{Root: e.BPFDir}.Pin(bpf.KindMap, bpf.MapProcesses), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer table.Close()
	value := make([]byte, table.ValueSize())
	for i := range uint32(processes) {
		// struct process: cgroup_id at 16, pid at 24, binary at 48.
		binary.LittleEndian.PutUint64(value[16:], cgroups[i%containers].ID)
		binary.LittleEndian.PutUint32(value[24:], 4_000_000+i)
		copy(value[48:], "/usr/bin/bench")
		if err := table.Update(4_000_000+i, value, ebpf.UpdateAny); err != nil {
			b.Fatalf("fill process table entry %d: %v", i, err)
		}
	}
	// Real process_exec and process_exit events, described through the table.
	for range 20 {
		cgroups[0].Run(b, "/bin/sh", "-c", `/bin/sh -c '/usr/bin/true; true'; true`)
	}
	for b.Loop() {
		st, err := client.Status(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range st.Maps {
			if m.Name == bpf.MapProcesses && m.Entries < processes {
				b.Fatalf("process table holds %d entries, want at least %d", m.Entries, processes)
			}
		}
	}
	reportFields(b, fmt.Sprintf("/proc/%d/status", e.PID()), 1024, "VmRSS:", "VmHWM:")
	// The table's kernel memory (preallocated at its capacity), for scale.
	reportFields(b, fmt.Sprintf("/proc/self/fdinfo/%d", table.FD()), 1, "memlock:")
}

// reportFields reports fields of a /proc file ("name: N ...") in MB, N
// being in units of unit bytes.
func reportFields(b *testing.B, path string, unit float64, fields ...string) {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		for _, field := range fields {
			if rest, ok := strings.CutPrefix(line, field); ok {
				n, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
				b.ReportMetric(n*unit/(1<<20), strings.ToLower(strings.TrimSuffix(field, ":"))+"-MB")
			}
		}
	}
}

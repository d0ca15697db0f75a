package bpf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// Benchmark setups: no programs loaded, programs with only the benchmark's
// cgroup registered, and programs with 10,000 cgroups over 1,000 rulesets.
const (
	benchNone = "no-programs"
	benchOne  = "1-cgroup"
	benchMany = "10000-cgroups-1000-rulesets"
	// The loop runs in an unregistered cgroup 6 levels deep (a host
	// process): the programs walk its ancestors and find no container.
	benchUnregistered = "unregistered-depth-6-of-10000-cgroups"
	// benchEmpty attaches programs that return at once to sys_enter and
	// sys_exit: what any program there costs, the floor of the mapping
	// checks.
	benchEmpty = "empty-sys-programs"
)

// attachEmptySysPrograms attaches a program that does nothing to sys_enter
// and to sys_exit until the benchmark ends.
func attachEmptySysPrograms(b *testing.B) {
	for _, tp := range []string{"sys_enter", "sys_exit"} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:         "holdfast_empty",
			Type:         ebpf.Tracing,
			AttachType:   ebpf.AttachTraceRawTp,
			AttachTo:     tp,
			License:      "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err != nil {
			b.Fatalf("load empty %s program: %v", tp, err)
		}
		b.Cleanup(func() { prog.Close() })
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			b.Fatalf("attach empty %s program: %v", tp, err)
		}
		b.Cleanup(func() { l.Close() })
	}
}

// benchRuleset has exec and connect rules that the benchmark's own execs
// and connects do not match, so every check runs to the end.
func benchRuleset(id uint32) Ruleset {
	rs := Ruleset{ID: id}
	for i, p := range []string{"/usr/sbin/", "/usr/bin/id", "/usr/local/bin/", "/tmp/x/y/z"} {
		components, prefix, _ := SplitPath(p)
		kind := ExecExact
		if prefix {
			kind = ExecPrefix
		}
		rs.Exec = append(rs.Exec, ExecRule{Kind: kind, Components: components, RuleID: uint32(i)})
	}
	for i := range 3 {
		prefix := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(id >> 8), byte(id), byte(i * 64)}), 26)
		rs.Connect = append(rs.Connect, NetRule{Prefix: prefix, PortLo: 80, PortHi: 443, Proto: ProtoTCP, RuleID: uint32(10 + i)})
	}
	rs.Connect = append(rs.Connect, NetRule{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PortHi: 65535, RuleID: 20})
	return rs
}

func setupBench(b *testing.B, mode string) (*testCgroup, *Enforcer) {
	env := newTestEnv(b)
	name := "bench"
	if mode == benchUnregistered {
		for _, dir := range []string{"h1", "h1/h2", "h1/h2/h3", "h1/h2/h3/h4"} {
			env.cgroup(b, dir)
		}
		name = "h1/h2/h3/h4/bench"
	}
	cg := env.cgroup(b, name)
	switch mode {
	case benchNone:
		return cg, nil
	case benchEmpty:
		attachEmptySysPrograms(b)
		return cg, nil
	}
	e := env.open(b)
	own := benchRuleset(1)
	if err := e.PutRuleset(own); err != nil {
		b.Fatal(err)
	}
	if mode != benchUnregistered {
		if err := e.SetCgroup(cg.id, own.ID); err != nil {
			b.Fatal(err)
		}
	}
	benchFiles(b, e, cg.id)
	if mode == benchMany || mode == benchUnregistered {
		putOtherRulesets(b, e, benchRuleset, func(id uint64) { benchFiles(b, e, id) })
	}
	return cg, e
}

// putOtherRulesets loads rulesets 2 to 1,001 made by build and registers
// 9,999 other cgroups over them, calling each (if set) with every cgroup.
func putOtherRulesets(b *testing.B, e *Enforcer, build func(uint32) Ruleset, each func(cgroupID uint64)) {
	const rulesets, cgroups = 1000, 10000
	for i := range uint32(rulesets) {
		if err := e.PutRuleset(build(2 + i)); err != nil {
			b.Fatal(err)
		}
	}
	// IDs no real cgroup has; the hash map does not care.
	for i := range uint64(cgroups - 1) {
		id := 1<<40 + i
		if err := e.SetCgroup(id, 2+uint32(i%rulesets)); err != nil {
			b.Fatal(err)
		}
		if each != nil {
			each(id)
		}
	}
}

// benchStatsEnv set to 0 leaves BPF run-time stats off in the mapping
// benchmark: they add two clock reads to every run of the programs, which
// wall time then includes.
const benchStatsEnv = "HOLDFAST_BENCH_STATS"

// bpfStatsRunTime is BPF_STATS_RUN_TIME.
const bpfStatsRunTime = 0

// measureProgram reports the mean run time of the named program over the
// rest of the benchmark as bpf-ns/run. It counts every run on the machine,
// but while the benchmark loops, nearly all runs are its own.
func measureProgram(b *testing.B, e *Enforcer, name string) {
	measureProgramAs(b, e, name, "bpf-ns/run")
}

// measureProgramAs reports a program's mean run time under its own unit,
// for a second program of the same loop (e.g. egress next to connect4).
func measureProgramAs(b *testing.B, e *Enforcer, name, unit string) {
	if e == nil {
		return
	}
	stats, err := ebpf.EnableStats(bpfStatsRunTime)
	if err != nil {
		b.Logf("no bpf run-time stats: %v", err)
		return
	}
	prog := e.progs[name]
	before, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		defer stats.Close()
		after, err := prog.Stats()
		if err != nil || after.RunCount == before.RunCount {
			return
		}
		b.ReportMetric(float64(after.Runtime-before.Runtime)/float64(after.RunCount-before.RunCount), unit)
	})
}

func BenchmarkForkExec(b *testing.B) {
	trueBin, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{benchNone, benchOne, benchMany} {
		b.Run(mode, func(b *testing.B) {
			cg, e := setupBench(b, mode)
			measureProgram(b, e, progExecKill)
			for b.Loop() {
				if err := command(cg, trueBin).Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// enterCgroup moves the whole test process into cg until the benchmark ends.
func enterCgroup(b *testing.B, cg *testCgroup) {
	mount, err := cgroup.Detect()
	if err != nil {
		b.Fatal(err)
	}
	orig, err := mount.DirOfPID(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	move := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
	}
	if err := move(cg.dir); err != nil {
		b.Fatalf("enter cgroup %s: %v", cg.dir, err)
	}
	b.Cleanup(func() {
		if err := move(orig); err != nil {
			b.Errorf("return to cgroup %s: %v", orig, err)
		}
	})
}

func BenchmarkConnect(b *testing.B) {
	for _, mode := range []string{benchNone, benchOne, benchMany, benchUnregistered} {
		b.Run(mode, func(b *testing.B) {
			cg, e := setupBench(b, mode)
			addr := harness.ListenTCP(b, "127.0.0.1:0").String()
			enterCgroup(b, cg)
			measureProgram(b, e, holdfastProgConnect4)
			measureProgramAs(b, e, holdfastProgEgress, "egress-ns/pkt")
			for b.Loop() {
				c, err := net.Dial("tcp4", addr)
				if err != nil {
					b.Fatal(fmt.Errorf("connect %s: %w", addr, err))
				}
				c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT pile-up
				c.Close()
			}
		})
	}
}

// measurePrograms reports, for each named program, its mean run time per
// run (unit "<name>-ns/run") and its run time per benchmark iteration
// ("<name>-ns/op"). Programs on sys_enter/sys_exit run for every system call
// on the machine, so the first is mostly the cost of the early filter and
// the second is what one iteration pays in total (plus whatever else runs on
// the machine meanwhile).
func measurePrograms(b *testing.B, e *Enforcer, names ...string) {
	if e == nil || os.Getenv(benchStatsEnv) == "0" {
		return
	}
	stats, err := ebpf.EnableStats(bpfStatsRunTime)
	if err != nil {
		b.Logf("no bpf run-time stats: %v", err)
		return
	}
	type sample struct{ runtime, runs uint64 }
	before := map[string]sample{}
	for _, name := range names {
		s, err := e.progs[name].Stats()
		if err != nil {
			b.Fatal(err)
		}
		before[name] = sample{uint64(s.Runtime), s.RunCount}
	}
	b.Cleanup(func() {
		defer stats.Close()
		for _, name := range names {
			s, err := e.progs[name].Stats()
			if err != nil || s.RunCount == before[name].runs || b.N == 0 {
				continue
			}
			ns := float64(uint64(s.Runtime) - before[name].runtime)
			b.ReportMetric(ns/float64(s.RunCount-before[name].runs), name+"-ns/run")
			b.ReportMetric(ns/float64(b.N), name+"-ns/op")
		}
	})
}

// BenchmarkMmapExec maps one page of a shared library executable and unmaps
// it, from inside the benchmark's cgroup. The overlay variants map the
// library from an overlay mount, as in a container, where the kernel maps
// the layer's file and the exit check judges it by the overlay path.
func BenchmarkMmapExec(b *testing.B) {
	host := hostLibrary(b)
	for _, fs := range []string{"", "overlay/"} {
		for _, mode := range []string{benchNone, benchEmpty, benchOne, benchMany} {
			if fs != "" && (mode == benchMany || mode == benchEmpty) {
				continue
			}
			b.Run(fs+mode, func(b *testing.B) {
				lib := host
				if fs != "" {
					o := newOverlayRoot(b, nil, map[string]string{"/lib/libhf.so": host})
					lib = filepath.Join(o.merged, "lib", "libhf.so")
				}
				cg, e := setupBench(b, mode)
				f, err := os.Open(lib)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				enterCgroup(b, cg)
				measurePrograms(b, e, progMmapKill, progMmapKillExit)
				for b.Loop() {
					m, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_EXEC, syscall.MAP_PRIVATE)
					if err != nil {
						b.Fatal(fmt.Errorf("mmap %s: %w", lib, err))
					}
					if err := syscall.Munmap(m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSyscall is what the sys_enter/sys_exit programs add to every
// system call of every process: getppid from a cgroup that is not
// registered. BPF stats stay off here: they add two clock reads per run.
func BenchmarkSyscall(b *testing.B) {
	for _, mode := range []string{benchNone, benchEmpty, benchMany} {
		b.Run(mode, func(b *testing.B) {
			setupBench(b, mode)
			for b.Loop() {
				syscall.Getppid()
			}
		})
	}
}

// BenchmarkSendto sends unconnected UDP datagrams: each runs sendmsg4.
func BenchmarkSendto(b *testing.B) {
	for _, mode := range []string{benchNone, benchOne, benchMany, benchUnregistered} {
		b.Run(mode, func(b *testing.B) {
			cg, e := setupBench(b, mode)
			sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { sink.Close() })
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := sink.Read(buf); err != nil {
						return
					}
				}
			}()
			dst := sink.LocalAddr().(*net.UDPAddr)
			enterCgroup(b, cg)
			pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer pc.Close()
			msg := []byte("holdfast")
			measureProgram(b, e, holdfastProgSendmsg4)
			measureProgramAs(b, e, holdfastProgEgress, "egress-ns/pkt")
			for b.Loop() {
				if _, err := pc.WriteToUDP(msg, dst); err != nil {
					b.Fatal(fmt.Errorf("sendto %s: %w", dst, err))
				}
			}
		})
	}
}

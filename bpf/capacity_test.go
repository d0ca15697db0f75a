package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// floodHelper connects one TCP socket N times to a denied IPv4 address and
// prints how many connects failed with EPERM.
func floodHelper(args []string) int {
	if len(args) != 2 {
		fmt.Fprintf(os.Stderr, "flood: want N IPV4:PORT, got %q\n", args)
		return 2
	}
	n, err := strconv.Atoi(args[0])
	ap, err2 := netip.ParseAddrPort(args[1])
	if err != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "flood:", err, err2)
		return 2
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		return 1
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	refused := 0
	for range n {
		// A refused connect leaves the socket unconnected, so it can retry.
		if err := syscall.Connect(fd, sa); err == syscall.EPERM {
			refused++
		}
	}
	fmt.Println(refused)
	return 0
}

func TestMapCapacity(t *testing.T) {
	env := newTestEnv(t)
	e, err := Open(env.layout, Options{CgroupRoot: env.cgroupRoot, Log: testLogger(t), Capacity: Capacity{MapCgroupRules: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.PutRuleset(Ruleset{ID: 1, Exec: []ExecRule{{Kind: ExecExact, Components: []string{"x"}, RuleID: 1}}}); err != nil {
		t.Fatal(err)
	}
	for cg := uint64(1); cg <= 4; cg++ {
		if err := e.SetCgroup(cg, 1); err != nil {
			t.Fatalf("cgroup %d of 4: %v", cg, err)
		}
	}
	err = e.SetCgroup(5, 1)
	if !errors.Is(err, ErrMapFull) || !strings.Contains(err.Error(), "cgroup_rules") || !strings.Contains(err.Error(), "capacity of 4") {
		t.Fatalf("fifth cgroup in a map of 4: got %v, want ErrMapFull naming cgroup_rules and its capacity", err)
	}
	// Replacing an entry of a full map still works.
	if err := e.SetCgroup(4, 1); err != nil {
		t.Errorf("rewrite an entry of a full map: %v", err)
	}
	usage := usageOf(t, e, MapCgroupRules)
	if usage.Entries != 4 || usage.Capacity != 4 || usage.Requested != 4 {
		t.Errorf("usage %+v: want 4 of 4, requested 4", usage)
	}
	e.Close()

	// Adopted pins keep their capacity; the new request is only reported.
	e2, err := Open(env.layout, Options{CgroupRoot: env.cgroupRoot, Log: testLogger(t), Capacity: Capacity{MapCgroupRules: 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if !e2.Adopted() {
		t.Fatal("pins with another capacity were not adopted")
	}
	if u := usageOf(t, e2, MapCgroupRules); u.Capacity != 4 || u.Requested != 8 || u.Entries != 4 {
		t.Errorf("adopted usage %+v: want 4 of 4, requested 8", u)
	}
	if u := usageOf(t, e2, MapEvents); u.Entries != -1 || u.Capacity != 256*1024 {
		t.Errorf("events usage %+v: want no entry count and 256 KiB", u)
	}

	if _, err := Open(env.layout, Options{CgroupRoot: env.cgroupRoot, Capacity: Capacity{MapEvents: 5000}}); err == nil {
		t.Error("a ring buffer of 5000 bytes was accepted")
	}
}

func usageOf(t *testing.T, e *Enforcer, name string) MapUsage {
	t.Helper()
	all, err := e.MapUsage()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range all {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no usage of map %s in %+v", name, all)
	return MapUsage{}
}

// A flood of denied connects reaches the ring buffer only EventBurst times;
// the kernel counts every one.
func TestDenialRateLimit(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "flood")
	ls := newListeners(t)
	rs := Ruleset{ID: 3, Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: ls.tcp4Port, PortHi: ls.tcp4Port, Proto: ProtoTCP, RuleID: 11}}}
	enforce(t, e, cg, rs)
	r := openEvents(t, e)
	before, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}

	const n = 100000
	out, err := helper(cg, "flood", strconv.Itoa(n), ls.tcp4).Output()
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(n) {
		t.Fatalf("flood: %q, %v; want all %d connects refused", out, err, n)
	}
	denials, err := e.Denials()
	if err != nil {
		t.Fatal(err)
	}
	got := denials[DenialKey{CgroupID: cg.id, RuleID: 11, Action: ActionConnectRefused}]
	if got.Total != n || got.Sent+got.Lost > EventBurst || got.Sent == 0 {
		t.Errorf("denial count %+v: want total %d and at most %d sent or lost", got, n, EventBurst)
	}
	after, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.ConnectRefused - before.ConnectRefused; d != n {
		t.Errorf("connect_refused counter rose by %d, want %d", d, n)
	}
	for i := uint64(0); i < got.Sent; i++ {
		if ev := readEvent(t, r); ev.CgroupID != cg.id || ev.RuleID != 11 {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	// Nothing beyond what the counters say was sent.
	r.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if ev, err := r.Read(); err == nil {
		t.Errorf("event beyond the %d sent: %+v", got.Sent, ev)
	}

	if err := e.DeleteDenials(cg.id); err != nil {
		t.Fatal(err)
	}
	if denials, _ := e.Denials(); len(denials) != 0 {
		t.Errorf("denials after DeleteDenials: %+v", denials)
	}
}

// BenchmarkDeniedConnect is the cost of a refused connect once the rate
// limit holds events back: the path a workload looping on a denied
// destination takes.
func BenchmarkDeniedConnect(b *testing.B) {
	cg, e := setupBench(b, benchOne)
	// The cgroup hooks run for sockets created inside the attach point.
	enterCgroup(b, cg)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer syscall.Close(fd)
	sa := &syscall.SockaddrInet4{Port: 80, Addr: [4]byte{192, 0, 2, 1}} // rule 20 of benchRuleset
	measureProgram(b, e, holdfastProgConnect4)
	for b.Loop() {
		if err := syscall.Connect(fd, sa); err != syscall.EPERM {
			b.Fatalf("connect to a denied destination: %v, want EPERM", err)
		}
	}
}

// BenchmarkMapUsage is what status pays to count the entries of every map
// with 10,000 cgroups and 1,000 rulesets loaded.
func BenchmarkMapUsage(b *testing.B) {
	_, e := setupBench(b, benchMany)
	for b.Loop() {
		if _, err := e.MapUsage(); err != nil {
			b.Fatal(err)
		}
	}
}

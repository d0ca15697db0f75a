package bpf

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/test/require"
)

// In lsm mode mmap_kill is not attached; socket_kill, its own program on
// sys_enter, kills packet socket callers there. LSM programs do not load on
// every machine, so this runs socket_kill alone in place of kill mode's
// mmap_kill: the same routes are killed.
func TestSocketKillProgramAlone(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	rt := buildRedteam(t)
	rs := Ruleset{ID: 1, Sockets: []SocketRule{{Family: familyPacket, Type: SocketAny, Protocol: SocketAny, RuleID: 1}}}
	if err := e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}

	// Detach kill mode's sys_enter program: its pin held the link.
	l := e.links[progMmapKill]
	if err := l.Unpin(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	delete(e.links, progMmapKill)

	spec, err := loadHoldfast()
	if err != nil {
		t.Fatal(err)
	}
	maps, err := loadPinnedMaps(e.layout, spec)
	t.Cleanup(func() {
		for _, m := range maps {
			m.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	progs, err := loadPrograms(btf.NewCache(), spec, maps, progSocketKill)
	if err != nil {
		t.Fatal(err)
	}
	prog := progs[progSocketKill]
	t.Cleanup(func() { prog.Close() })
	sl, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		t.Fatalf("attach %s: %v", progSocketKill, err)
	}
	t.Cleanup(func() { sl.Close() })

	_, compat := command(nil, rt, "packet", "ia32-socket", "127.0.0.2").Output()
	for i, route := range []string{"direct", "io-uring", "ia32-socket", "ia32-socketcall", "clone-files"} {
		t.Run(route, func(t *testing.T) {
			if strings.HasPrefix(route, "ia32") {
				require.Privileged(t, "ia32 system calls", compat)
			}
			cg := env.cgroup(t, fmt.Sprintf("alone-%d", i))
			if err := e.SetCgroup(cg.id, rs.ID); err != nil {
				t.Fatal(err)
			}
			out, err := command(cg, rt, "packet", route, "127.0.0.2").Output()
			if !killedBySIGKILL(err) {
				t.Errorf("packet socket by %s with socket_kill alone: err=%v, output %q; want killed by SIGKILL", route, err, out)
			}
		})
	}
	// Other sockets, and io_uring where packet sockets are allowed, live.
	cg := env.cgroup(t, "alone-other")
	if err := e.SetCgroup(cg.id, rs.ID); err != nil {
		t.Fatal(err)
	}
	out, err := helper(cg, "socket", fmt.Sprint(unix.AF_INET), fmt.Sprint(unix.SOCK_DGRAM), "0").Output()
	if got := strings.TrimSpace(string(out)); err != nil || got != "OK" {
		t.Errorf("UDP socket under a packet rule with socket_kill alone: %v, %q; want OK", err, got)
	}
}

package bpf

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// readEvent reads one event; the deadline only guards against a hang.
func readEvent(t *testing.T, r *EventReader) Event {
	t.Helper()
	r.SetDeadline(time.Now().Add(10 * time.Second))
	ev, err := r.Read()
	if err != nil {
		t.Fatalf("read event: %v", err)
	}
	// Every event but egress's names its process's start; the process
	// table tests check its value. Cleared so events compare by the rest.
	if (ev.StartNs == 0) != (ev.Action == ActionPacketDropped) {
		t.Errorf("%s event: start of the acting process %d", ev.Action, ev.StartNs)
	}
	ev.StartNs = 0
	return ev
}

// checkTime allows for the gap between reading the two clocks.
func checkTime(t *testing.T, got, before, after time.Time) {
	t.Helper()
	const slack = 50 * time.Millisecond
	if got.Before(before.Add(-slack)) || got.After(after.Add(slack)) {
		t.Errorf("event time %v not between %v and %v", got, before, after)
	}
}

func TestEvents(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "events")
	ls := newListeners(t)
	id := resolved(t, "/usr/bin/id")

	rs := Ruleset{ID: 42,
		Exec:    []ExecRule{mustExecRule(t, id, 7)},
		Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: ls.tcp4Port, PortHi: ls.tcp4Port, Proto: ProtoAny, RuleID: 8}},
	}
	enforce(t, e, cg, rs)
	r := openEvents(t, e)

	t.Run("exec killed", func(t *testing.T) {
		before := time.Now()
		cmd := command(cg, id)
		if err := cmd.Run(); !killedBySIGKILL(err) {
			t.Fatalf("want SIGKILL, got %v", err)
		}
		after := time.Now()
		ev := readEvent(t, r)
		want := Event{
			Action:   ActionExecKilled,
			PID:      uint32(cmd.Process.Pid),
			TGID:     uint32(cmd.Process.Pid),
			PPID:     uint32(os.Getpid()),
			CgroupID: cg.id,
			RuleID:   7,
			Ruleset:  42,
			Comm:     "id",
			Filename: id,
		}
		checkTime(t, ev.Time, before, after)
		ev.Time = time.Time{}
		if ev != want {
			t.Errorf("event\n got %+v\nwant %+v", ev, want)
		}
	})

	t.Run("connect refused", func(t *testing.T) {
		before := time.Now()
		cmd := helper(cg, "dial", "tcp4", "-", ls.tcp4)
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != "EPERM" {
			t.Fatalf("dial: %q, %v", out, err)
		}
		after := time.Now()
		ev := readEvent(t, r)
		want := Event{
			Action:   ActionConnectRefused,
			PID:      ev.PID, // the dialing thread, any of the helper's
			TGID:     uint32(cmd.Process.Pid),
			PPID:     uint32(os.Getpid()),
			CgroupID: cg.id,
			RuleID:   8,
			Ruleset:  42,
			Comm:     ev.Comm,
			Family:   FamilyIPv4,
			Addr:     netip.MustParseAddr("127.0.0.1"),
			Port:     ls.tcp4Port,
			Proto:    ProtoTCP,
		}
		checkTime(t, ev.Time, before, after)
		ev.Time = time.Time{}
		if ev != want {
			t.Errorf("event\n got %+v\nwant %+v", ev, want)
		}
		if !strings.HasPrefix(os.Args[0][strings.LastIndex(os.Args[0], "/")+1:], ev.Comm) || ev.Comm == "" {
			t.Errorf("comm %q is not the helper's", ev.Comm)
		}
	})

	t.Run("v4-mapped connect is reported as v6", func(t *testing.T) {
		out, err := helper(cg, "dial", "tcp", "[::]:0", ls.tcp4).Output()
		if err != nil || strings.TrimSpace(string(out)) != "EPERM" {
			t.Fatalf("dial: %q, %v", out, err)
		}
		ev := readEvent(t, r)
		if ev.Family != FamilyIPv6 || ev.Addr != netip.MustParseAddr("::ffff:127.0.0.1") || ev.Port != ls.tcp4Port {
			t.Errorf("event %+v: want family 10, addr ::ffff:127.0.0.1, port %d", ev, ls.tcp4Port)
		}
	})

	t.Run("udp sendmsg refused", func(t *testing.T) {
		enforce(t, e, cg, Ruleset{ID: 43, Connect: []NetRule{{Prefix: mustPrefix(t, "::1/128"), PortHi: 65535, Proto: ProtoUDP, RuleID: 9}}})
		out, err := helper(cg, "sendto", "udp6", "[::1]:0", ls.udp6).Output()
		if err != nil || strings.TrimSpace(string(out)) != "EPERM" {
			t.Fatalf("sendto: %q, %v", out, err)
		}
		ev := readEvent(t, r)
		if ev.Action != ActionSendmsgRefused || ev.Family != FamilyIPv6 || ev.Addr != netip.IPv6Loopback() ||
			ev.Port != portOf(t, ls.udp6) || ev.Proto != ProtoUDP || ev.RuleID != 9 || ev.Ruleset != 43 {
			t.Errorf("event %+v: want sendmsg-refused to [::1]:%d udp by rule 9 of ruleset 43", ev, portOf(t, ls.udp6))
		}
	})

	t.Run("close unblocks read", func(t *testing.T) {
		r2, err := e.Events()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := r2.Read()
			done <- err
		}()
		if err := r2.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, os.ErrClosed) {
			t.Fatalf("read after close: %v, want os.ErrClosed", err)
		}
	})
}

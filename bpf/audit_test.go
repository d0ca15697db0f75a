package bpf

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitEvent reads events until one matches; the deadline only guards
// against a hang.
func waitEvent(t *testing.T, r *EventReader, what string, match func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.SetDeadline(deadline)
		ev, err := r.Read()
		if err != nil {
			t.Fatalf("no %s event: %v", what, err)
		}
		if match(ev) {
			return ev
		}
	}
}

// setAudit marks every rule of rs audited or enforcing, refusals without a
// rule included.
func setAudit(rs Ruleset, audit bool) Ruleset {
	rs.Exec = withMode(rs.Exec, func(r *ExecRule) { r.Audit = audit })
	rs.Connect = withMode(rs.Connect, func(r *NetRule) { r.Audit = audit })
	rs.Sockets = withMode(rs.Sockets, func(r *SocketRule) { r.Audit = audit })
	rs.Bind = withMode(rs.Bind, func(r *BindRule) { r.Audit = audit })
	rs.AuditNotAllowed, rs.AuditUnresolved = audit, audit
	return rs
}

func withMode[R any](rules []R, set func(*R)) []R {
	out := slices.Clone(rules)
	for i := range out {
		set(&out[i])
	}
	return out
}

// putOn stores rs and points cg at it.
func putOn(t *testing.T, e *Enforcer, cg *testCgroup, rs Ruleset) {
	t.Helper()
	enforce(t, e, cg, rs)
}

// One ruleset with a rule at every hook, put in audit mode, switched to
// enforcing and back in place: audited decisions let the operation go ahead
// and send an Audited event; the cgroup's entry never changes.
func TestAuditModeAtEveryHook(t *testing.T) {
	allowPing(t)
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "audit")
	ls := newListeners(t)
	id := resolved(t, "/usr/bin/id")
	ldso := loaderPath(t)
	mark := newMarker(t)
	rawDst := newReceiver(t, "udp", netip.MustParseAddrPort("127.0.0.2:0"))
	rawPort := rawDst.addr.Port()
	ethPAll := fmt.Sprint(int(htons(unix.ETH_P_ALL)))

	rs := setAudit(Ruleset{ID: 60,
		Exec:    []ExecRule{mustExecRule(t, id, 1)},
		Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: ls.tcp4Port, PortHi: ls.tcp4Port, Proto: ProtoTCP, RuleID: 2}, {Prefix: mustPrefix(t, "127.0.0.2/32"), PortLo: rawPort, PortHi: rawPort, Proto: ProtoUDP, RuleID: 6}, {Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: portOf(t, ls.udp4), PortHi: portOf(t, ls.udp4), Proto: ProtoUDP, RuleID: 7}},
		Sockets: []SocketRule{{Family: familyInet, Type: unix.SOCK_RAW, Protocol: unix.IPPROTO_ICMP, RuleID: 4}, {Family: familyPacket, Type: SocketAny, Protocol: SocketAny, RuleID: 5}},
		Bind:    []BindRule{{PortLo: 8050, PortHi: 8050, Proto: ProtoTCP, RuleID: 3}},
	}, true)
	putOn(t, e, cg, rs)
	r := openEvents(t, e)

	type op struct {
		name   string
		action string
		rule   uint32
		run    func(t *testing.T) (refused bool, detail string)
	}
	helperResult := func(t *testing.T, mode string, args ...string) (bool, string) {
		out, err := helper(cg, mode, args...).Output()
		if killedBySIGKILL(err) {
			return true, "killed"
		}
		if err != nil {
			t.Fatalf("%s helper: %v", mode, err)
		}
		res := strings.TrimSpace(string(out))
		return res != "OK", res
	}
	ops := []op{
		{"exec", ActionExecKilled, 1, func(t *testing.T) (bool, string) {
			out, err := command(cg, id).Output()
			if killedBySIGKILL(err) {
				return true, "killed"
			}
			if err != nil || !strings.Contains(string(out), "uid=") {
				t.Fatalf("%s: %v, output %q", id, err, out)
			}
			return false, "ran"
		}},
		{"mmap", ActionMmapKilled, 1, func(t *testing.T) (bool, string) {
			out, err := command(cg, ldso, id).Output()
			if killedBySIGKILL(err) {
				return true, "killed"
			}
			if err != nil || !strings.Contains(string(out), "uid=") {
				t.Fatalf("%s %s: %v, output %q", ldso, id, err, out)
			}
			return false, "ran"
		}},
		{"connect", ActionConnectRefused, 2, func(t *testing.T) (bool, string) {
			return helperResult(t, "dial", "tcp4", "-", ls.tcp4)
		}},
		{"sendmsg", ActionSendmsgRefused, 7, func(t *testing.T) (bool, string) {
			return helperResult(t, "sendto", "udp4", "127.0.0.1:0", ls.udp4)
		}},
		{"bind", ActionBindRefused, 3, func(t *testing.T) (bool, string) {
			return helperResult(t, "bind", "tcp4", "127.0.0.1:8050")
		}},
		{"socket", ActionSocketRefused, 4, func(t *testing.T) (bool, string) {
			return helperResult(t, "socket", fmt.Sprint(unix.AF_INET), fmt.Sprint(unix.SOCK_RAW), fmt.Sprint(unix.IPPROTO_ICMP))
		}},
		{"packet socket", ActionSocketKilled, 5, func(t *testing.T) (bool, string) {
			return helperResult(t, "socket", fmt.Sprint(unix.AF_PACKET), fmt.Sprint(unix.SOCK_RAW), ethPAll)
		}},
		{"egress", ActionPacketDropped, 6, func(t *testing.T) (bool, string) {
			res, arrived := escape(t, cg, mark, "raw-udp", rawDst)
			return !arrived, res
		}},
	}
	phase := func(t *testing.T, audit bool) {
		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				refused, detail := o.run(t)
				if refused == audit {
					t.Fatalf("audit=%v: refused=%v (%s)", audit, refused, detail)
				}
				ev := waitEvent(t, r, o.action, func(ev Event) bool { return ev.Action == o.action && ev.CgroupID == cg.id })
				if ev.Audited != audit || ev.RuleID != o.rule || ev.Ruleset != rs.ID {
					t.Errorf("event %+v: want audited=%v rule %d ruleset %d", ev, audit, o.rule, rs.ID)
				}
			})
		}
	}
	before, err := e.Cgroups()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("audit", func(t *testing.T) { phase(t, true) })
	if err := e.SetAuditModes(setAudit(rs, false)); err != nil {
		t.Fatal(err)
	}
	t.Run("enforce", func(t *testing.T) { phase(t, false) })
	if err := e.SetAuditModes(rs); err != nil {
		t.Fatal(err)
	}
	t.Run("audit again", func(t *testing.T) { phase(t, true) })
	after, err := e.Cgroups()
	if err != nil {
		t.Fatal(err)
	}
	if after[cg.id] != before[cg.id] || before[cg.id] != rs.ID {
		t.Errorf("cgroup entry changed by mode switches: %d before, %d after", before[cg.id], after[cg.id])
	}

	// Audited decisions are counted per (cgroup, rule, action) apart from
	// denials.
	denials, err := e.Denials()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		for _, audited := range []bool{true, false} {
			k := DenialKey{CgroupID: cg.id, RuleID: o.rule, Action: o.action, Audited: audited}
			if denials[k].Total == 0 {
				t.Errorf("no count for %+v", k)
			}
		}
	}
	counters, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if counters.Audited < uint64(2*len(ops)) {
		t.Errorf("counters %+v: want at least %d audited decisions", counters, 2*len(ops))
	}
}

// A ruleset of enforcing and audit-mode rules: wherever both match, the
// enforcing rule decides, whatever their specificity.
func TestAuditEnforcingRuleWins(t *testing.T) {
	allowPing(t)
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "mixed")
	ls := newListeners(t)
	id := resolved(t, "/usr/bin/id")
	trueBin := resolved(t, "/usr/bin/true")
	base := resolved(t, t.TempDir())
	dirTrue := filepath.Join(base, "dir", "true")
	copyExecutable(t, trueBin, dirTrue)
	otherTrue := filepath.Join(base, "dir", "other")
	copyExecutable(t, trueBin, otherTrue)
	audited := func(r ExecRule) ExecRule { r.Audit = true; return r }

	rs := Ruleset{ID: 61,
		Exec: []ExecRule{
			audited(mustExecRule(t, id, 1)), mustExecRule(t, id, 2), // the same path
			audited(mustExecRule(t, filepath.Join(base, "dir")+"/", 3)), mustExecRule(t, dirTrue, 4), // prefix over exact
		},
		Connect: []NetRule{
			{Prefix: mustPrefix(t, "127.0.0.0/8"), PortLo: 0, PortHi: 65535, Proto: ProtoAny, RuleID: 5, Audit: true},
			{Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: ls.tcp4Port, PortHi: ls.tcp4Port, Proto: ProtoTCP, RuleID: 6},
			{Prefix: mustPrefix(t, "::1/128"), PortLo: 0, PortHi: 65535, Proto: ProtoAny, RuleID: 7, Audit: true},
			{Prefix: mustPrefix(t, "::1/128"), PortLo: 0, PortHi: 65535, Proto: ProtoAny, RuleID: 8},
		},
		Sockets: []SocketRule{
			{Family: familyInet, Type: unix.SOCK_RAW, Protocol: unix.IPPROTO_ICMP, RuleID: 9, Audit: true},
			{Family: familyInet, Type: unix.SOCK_RAW, Protocol: SocketAny, RuleID: 10},
		},
		Bind: []BindRule{
			{PortLo: 1, PortHi: 65535, Proto: ProtoAny, RuleID: 11, Audit: true},
			{PortLo: 8050, PortHi: 8050, Proto: ProtoTCP, RuleID: 12},
		},
	}
	putOn(t, e, cg, rs)
	for _, c := range []struct {
		name   string
		path   string
		killed bool
	}{
		{"same path", id, true},
		{"exact under an audited prefix", dirTrue, true},
		{"only the audited prefix", otherTrue, false},
	} {
		err := command(cg, c.path).Run()
		if killedBySIGKILL(err) != c.killed {
			t.Errorf("exec %s (%s): %v, want killed=%v", c.path, c.name, err, c.killed)
		}
	}
	for _, c := range []netCheck{
		{"dial", "tcp4", "-", ls.tcp4, "EPERM"},         // enforcing /32 below an audited /8
		{"dial", "tcp4", "-", ls.tcp4Other, "OK"},       // only the audited /8
		{"dial", "tcp6", "-", ls.tcp6, "EPERM"},         // the same destination twice
		{"bind", "tcp4", "127.0.0.1:8050", "", "EPERM"}, // enforcing port in an audited range
		{"bind", "tcp4", "127.0.0.1:8051", "", "OK"},
	} {
		args := []string{c.network, c.laddr, c.raddr}
		if c.mode == "bind" {
			args = args[:2]
		}
		out, err := helper(cg, c.mode, args...).Output()
		if err != nil {
			t.Fatalf("%s helper: %v", c.mode, err)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("%s %s %s %s: %q, want %q", c.mode, c.network, c.laddr, c.raddr, got, c.want)
		}
	}
	// socket(AF_INET, SOCK_RAW, ICMP): the audited exact kind is covered by
	// the enforcing any-protocol rule.
	out, err := helper(cg, "socket", fmt.Sprint(unix.AF_INET), fmt.Sprint(unix.SOCK_RAW), fmt.Sprint(unix.IPPROTO_ICMP)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "EPERM" {
		t.Errorf("raw ICMP socket: %q, want EPERM", got)
	}
}

// An allow list in audit mode lets a file not on it run (wouldDeny,
// not-allowed); an audited deny rule does not let a file past an enforcing
// allow list.
func TestAuditAllowList(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "allow")
	id := resolved(t, "/usr/bin/id")
	trueBin := resolved(t, "/usr/bin/true")
	r := openEvents(t, e)

	allow := mustExecRule(t, trueBin, 1)
	allow.Kind = ExecAllowExact
	rs := Ruleset{ID: 62, Exec: []ExecRule{allow}, AuditNotAllowed: true}
	putOn(t, e, cg, rs)
	if out, err := command(cg, id).Output(); err != nil {
		t.Fatalf("%s under an audited allow list: %v, output %q", id, err, out)
	}
	ev := waitEvent(t, r, "not-allowed", func(ev Event) bool { return ev.CgroupID == cg.id })
	if !ev.Audited || !ev.NotAllowed || ev.RuleID != 0 || ev.Action != ActionExecKilled {
		t.Errorf("event %+v: want an audited not-allowed exec", ev)
	}
	if err := command(cg, trueBin).Run(); err != nil {
		t.Errorf("%s on the allow list: %v", trueBin, err)
	}

	rs.AuditNotAllowed = false
	if err := e.SetAuditModes(rs); err != nil {
		t.Fatal(err)
	}
	if err := command(cg, id).Run(); !killedBySIGKILL(err) {
		t.Errorf("%s under the enforcing allow list: %v, want SIGKILL", id, err)
	}

	// An audited deny rule for the file: the enforcing allow list still
	// refuses it (a new ruleset: the rules differ).
	deny := mustExecRule(t, id, 2)
	deny.Audit = true
	rs2 := Ruleset{ID: 63, Exec: []ExecRule{allow, deny}}
	putOn(t, e, cg, rs2)
	if err := command(cg, id).Run(); !killedBySIGKILL(err) {
		t.Errorf("%s, audited rule under an enforcing allow list: %v, want SIGKILL", id, err)
	}
	ev = waitEvent(t, r, "not-allowed kill", func(ev Event) bool { return ev.CgroupID == cg.id && !ev.Audited })
	if !ev.NotAllowed {
		t.Errorf("event %+v: want the not-allowed refusal", ev)
	}
}

// SetAuditModes refuses a ruleset it was not stored with and one never
// stored, and leaves the stored modes as they were.
func TestSetAuditModesRefusesOtherContent(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	id := resolved(t, "/usr/bin/id")
	rs := Ruleset{ID: 64, Exec: []ExecRule{mustExecRule(t, id, 1)}}
	if err := e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	other := setAudit(Ruleset{ID: 64, Exec: []ExecRule{mustExecRule(t, "/usr/bin/true", 1)}}, true)
	if err := e.SetAuditModes(other); err == nil || !strings.Contains(err.Error(), ErrRulesetConflict.Error()) {
		t.Errorf("other content: %v, want %v", err, ErrRulesetConflict)
	}
	if err := e.SetAuditModes(setAudit(Ruleset{ID: 65, Exec: rs.Exec}, true)); err == nil || !strings.Contains(err.Error(), ErrRulesetNotLoaded.Error()) {
		t.Errorf("unknown ruleset: %v, want %v", err, ErrRulesetNotLoaded)
	}
	rules, notAllowed, unresolved, err := e.AuditedRules(64)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 0 || notAllowed || unresolved {
		t.Errorf("modes changed by refused calls: rules %v notAllowed %v unresolved %v", rules, notAllowed, unresolved)
	}
	if err := e.SetAuditModes(setAudit(rs, true)); err != nil {
		t.Fatal(err)
	}
	rules, notAllowed, unresolved, err = e.AuditedRules(64)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rules, []uint32{1}) || !notAllowed || !unresolved {
		t.Errorf("audited: rules %v notAllowed %v unresolved %v; want [1] true true", rules, notAllowed, unresolved)
	}
	// Deleting the ruleset takes its modes with it.
	if err := e.DeleteRuleset(64); err != nil {
		t.Fatal(err)
	}
	if rules, notAllowed, _, _ := e.AuditedRules(64); len(rules) != 0 || notAllowed {
		t.Errorf("modes left after DeleteRuleset: %v %v", rules, notAllowed)
	}
}

// One mprotect over a mapping an audit-mode rule denies and one an
// enforcing rule denies: the audited one is recorded and the check goes on
// to the next, which kills.
func TestAuditMprotectSpan(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "span")
	mapfile := buildMapfile(t)
	base := resolved(t, t.TempDir())
	audited, audited2, denied := filepath.Join(base, "a", "lib.so"), filepath.Join(base, "b", "lib.so"), filepath.Join(base, "c", "lib.so")
	for _, p := range []string{audited, audited2, denied} {
		copyExecutable(t, hostLibrary(t), p)
	}
	auditRule := func(path string, id uint32) ExecRule { r := mustExecRule(t, path, id); r.Audit = true; return r }
	putOn(t, e, cg, Ruleset{ID: 66, Exec: []ExecRule{auditRule(audited, 1), auditRule(audited2, 2), mustExecRule(t, denied, 3)}})
	r := openEvents(t, e)

	out, err := command(cg, mapfile, "span-files", audited, audited2).Output()
	if err != nil || string(out) != "mapped\nOK\n" {
		t.Errorf("mprotect over two audited mappings: %v, output %q; want it to succeed", err, out)
	}
	for _, rule := range []uint32{1, 2} {
		ev := waitEvent(t, r, "audited mapping", func(ev Event) bool { return ev.CgroupID == cg.id && ev.RuleID == rule })
		if !ev.Audited || ev.Action != ActionMmapKilled {
			t.Errorf("event %+v: want an audited mmap-killed of rule %d", ev, rule)
		}
	}
	out, err = command(cg, mapfile, "span-files", audited, denied).Output()
	if !killedBySIGKILL(err) || string(out) != "mapped\n" {
		t.Errorf("mprotect over an audited and an enforced mapping: %v, output %q; want SIGKILL after mapping", err, out)
	}
	ev := waitEvent(t, r, "kill", func(ev Event) bool { return ev.CgroupID == cg.id && ev.RuleID == 3 })
	if ev.Audited || ev.Action != ActionMmapKilled {
		t.Errorf("event %+v: want the enforced mmap-killed of rule 3", ev)
	}
}

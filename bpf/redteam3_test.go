package bpf

// Red team, third pass: attacks on ancestry-scoped rules (from.ancestors).
// The policy under attack is "nothing the ancestor (a copy of sh standing
// for nginx) spawns may run id or connect to the listener". Every
// TestRedteam3* test asserts the secure behaviour; one gated by openHole is
// an open hole listed in README.

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// scopedEnv is an enforcer whose test cgroup has an exec rule on id and a
// connect rule on a local listener, both scoped to descendants of nginx.
type scopedEnv struct {
	env      *testEnv
	e        *Enforcer
	cg       *testCgroup
	nginx    string   // the ancestor binary
	ancestor []string // its path components
	id       string   // the denied binary (resolved)
	port     int
	helper   string // dial "$0" tcp4 - 127.0.0.1:port, as a shell command
}

func newScopedEnv(t *testing.T, capacity Capacity) *scopedEnv {
	t.Helper()
	env := newTestEnv(t)
	e, err := Open(env.layout, Options{CgroupRoot: env.cgroupRoot, Log: testLogger(t), Capacity: capacity})
	if err != nil {
		t.Fatalf("open enforcer: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	cg := env.cgroup(t, "scoped")
	// Sleepers an attack left behind go before the cgroup is removed.
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(cg.dir, "cgroup.kill"), []byte("1"), 0) })

	nginx := filepath.Join(resolved(t, t.TempDir()), "nginx")
	copyExecutable(t, resolved(t, "/bin/sh"), nginx)
	ancestor, _, err := SplitPath(nginx)
	if err != nil {
		t.Fatal(err)
	}
	id := resolved(t, "/usr/bin/id")
	srv := harness.ListenTCP(t, "127.0.0.1:0")
	rule := mustExecRule(t, id, 31)
	rule.From = 1
	rs := Ruleset{ID: 9, Exec: []ExecRule{rule}, Ancestors: [][]string{ancestor},
		Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: uint16(srv.Port), PortHi: uint16(srv.Port), RuleID: 32, From: 1}}}
	enforce(t, e, cg, rs)
	return &scopedEnv{env: env, e: e, cg: cg, ancestor: ancestor, nginx: nginx, id: id, port: srv.Port,
		helper: `"$0" tcp4 - 127.0.0.1:` + strconv.Itoa(srv.Port)}
}

// apply puts rs and moves the cgroup to it.
func (s *scopedEnv) apply(t *testing.T, rs Ruleset) {
	t.Helper()
	if err := s.e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	if err := s.e.SetCgroup(s.cg.id, rs.ID); err != nil {
		t.Fatal(err)
	}
}

// run runs script under shell in the cgroup and returns its output.
func (s *scopedEnv) run(t *testing.T, shell, script string) string {
	t.Helper()
	cmd := command(s.cg, shell, "-c", script, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=dial")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -c %q: %v: %s", shell, script, err, out)
	}
	return strings.TrimSpace(string(out))
}

// floodScript makes a child of the shell fork n sleepers and waits, with
// shell builtins only (no fork touches the shell's own table entry), until
// they run: the LRU table then has evicted the shell's entry.
func floodScript(n int, then string) string {
	return `f=$(mktemp -u); ( i=0; while [ $i -lt ` + strconv.Itoa(n) + ` ]; do sleep 10 & i=$((i+1)); done; : > $f; wait ) >/dev/null 2>&1 &
while [ ! -e $f ]; do :; done; rm -f $f; ` + then
}

// A descendant of the ancestor evicts its own process-table entry (and its
// ancestors') by starting more live processes than --max-processes: the
// LRU drops the least recently used, the long-lived ancestors. Without an
// entry a process carried no ancestor classes and scoped rules let it
// through. A process of the container that lost its entry is now judged as
// descended from every ancestor binary.
func TestRedteam3ScopedRulesAfterTableEviction(t *testing.T) {
	s := newScopedEnv(t, Capacity{MapProcesses: 64})
	for _, tc := range []struct{ name, then, want string }{
		{"exec", s.id + " >/dev/null; echo rc=$?", "rc=137"},
		{"exec by a child forked after the eviction", "(" + s.id + " >/dev/null); echo rc=$?", "rc=137"},
		{"connect", s.helper + "; true", "EPERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.run(t, s.nginx, floodScript(200, tc.then))
			if !strings.HasSuffix(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	// Still scoped: a process of the container whose chain the table holds,
	// outside the ancestor's subtree, runs id and connects.
	if got := s.run(t, "/bin/sh", s.id+" >/dev/null; echo rc=$?"); got != "rc=0" {
		t.Fatalf("outside the subtree: got %q, want rc=0", got)
	}
	if got := s.run(t, "/bin/sh", s.helper+"; true"); !strings.HasSuffix(got, "OK") {
		t.Fatalf("connect outside the subtree: got %q, want OK", got)
	}
}

// Routes a descendant of the ancestor takes to the denied file that hold:
// the class bits are copied at fork and only grow, whatever the process
// tree becomes, and the exec'd path is the one the kernel resolved.
func TestRedteam3ScopedExecRoutesThatHold(t *testing.T) {
	s := newScopedEnv(t, nil)
	helper := buildTestC(t, "redteam3")
	dir := t.TempDir()
	link := filepath.Join(dir, "id-link")
	if err := os.Symlink(s.id, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, script string }{
		{"symlink", link + " >/dev/null; echo rc=$?"},
		{"/proc/self/fd", "exec 3<" + s.id + "; /proc/self/fd/3 >/dev/null; echo rc=$?"},
		{"setsid", "setsid " + s.id + " >/dev/null; echo rc=$?"},
		{"non-leader thread", helper + " thread-exec " + s.id + "; echo rc=$?"},
		{"vfork", helper + " vfork-exec " + s.id + "; echo rc=$?"},
		{"double fork to a subreaper, setsid", helper + " orphan-exec " + s.id + "; echo rc=$?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.run(t, s.nginx, tc.script); !strings.HasSuffix(got, "rc=137") {
				t.Fatalf("got %q, want rc=137", got)
			}
		})
	}
	// The helper's routes let id run outside the ancestor's subtree: the
	// refusals above are the scope's, not the helper's.
	if got := s.run(t, "/bin/sh", helper+" orphan-exec "+s.id+" >/dev/null; echo rc=$?"); got != "rc=0" {
		t.Fatalf("outside the subtree: got %q, want rc=0", got)
	}
	// The ancestor started under another name (a symlink, so another comm
	// and argv[0]) is still the ancestor: classes go by the resolved path.
	httpd := filepath.Join(dir, "httpd")
	if err := os.Symlink(s.nginx, httpd); err != nil {
		t.Fatal(err)
	}
	if got := s.run(t, "/bin/sh", httpd+" -c '"+s.id+" >/dev/null; echo rc=$?'"); !strings.HasSuffix(got, "rc=137") {
		t.Fatalf("ancestor through a symlink: got %q, want rc=137", got)
	}
}

// Scoped exec rules match by the resolved path only, not by the file's
// identity as unscoped exact rules do: a hard link of the denied file in
// another directory (any process that may link it: its owner, or a
// container's root with CAP_FOWNER) runs below the ancestor.
func TestRedteam3ScopedExecRuleEscapedByHardLink(t *testing.T) {
	openHole(t)
	s := newScopedEnv(t, nil)
	// The copy stands for the image's file; the link is made beside it, on
	// the same file system, as a workload would.
	dir := t.TempDir()
	denied := filepath.Join(resolved(t, dir), "bin", "tool")
	copyExecutable(t, s.id, denied)
	rule := mustExecRule(t, denied, 33)
	rule.From = 1
	rs := Ruleset{ID: 10, Exec: []ExecRule{rule}, Ancestors: [][]string{s.ancestor}}
	s.apply(t, rs)
	if got := s.run(t, s.nginx, denied+" >/dev/null; echo rc=$?"); !strings.HasSuffix(got, "rc=137") {
		t.Fatalf("the rule's own path: got %q, want rc=137", got)
	}
	link := filepath.Join(resolved(t, dir), "tool-link")
	if got := s.run(t, s.nginx, "ln "+denied+" "+link+" && "+link+" >/dev/null; echo rc=$?"); !strings.HasSuffix(got, "rc=137") {
		t.Fatalf("hard link: got %q, want rc=137", got)
	}
}

// An audit-mode policy must neither weaken nor strengthen an enforcing one
// selected on the same container. Two scoped rules on one path share one
// map entry: the audited rule's ancestor classes were joined to the
// enforcing rule's and enforced under its ID, so a process below the
// audited ancestor only was killed. Enforcing entries now keep their own
// classes; an audited rule on the same path is left out.
func TestRedteam3AuditedScopeIsNotEnforced(t *testing.T) {
	s := newScopedEnv(t, nil)
	other := filepath.Join(filepath.Dir(s.nginx), "other")
	copyExecutable(t, s.nginx, other)
	var ancestors [][]string
	for _, a := range []string{s.nginx, other} {
		comps, _, err := SplitPath(a)
		if err != nil {
			t.Fatal(err)
		}
		ancestors = append(ancestors, comps)
	}
	enforced := mustExecRule(t, s.id, 41)
	enforced.From = 1 // nginx
	audited := mustExecRule(t, s.id, 40)
	audited.From, audited.Audit = 2, true // other
	rs := Ruleset{ID: 11, Exec: []ExecRule{audited, enforced}, Ancestors: ancestors}
	s.apply(t, rs)
	script := s.id + " >/dev/null; echo rc=$?"
	if got := s.run(t, s.nginx, script); !strings.HasSuffix(got, "rc=137") {
		t.Fatalf("below the enforced ancestor: got %q, want rc=137", got)
	}
	if got := s.run(t, other, script); got != "rc=0" {
		t.Fatalf("below the audited ancestor only: got %q, want rc=0", got)
	}
}

// Connect routes of a descendant that hold: the classes are looked up by
// thread group, and io_uring's workers belong to the caller's.
func TestRedteam3ScopedConnectRoutesThatHold(t *testing.T) {
	s := newScopedEnv(t, nil)
	rt := buildTestC(t, "redteam")
	port := strconv.Itoa(s.port)
	for _, kind := range []string{"uring-connect", "tfo", "dualstack-tcp", "uring-sendmsg", "sendmmsg"} {
		t.Run(kind, func(t *testing.T) {
			script := rt + " net " + kind + " 127.0.0.1 " + port
			if got := s.run(t, s.nginx, script+"; true"); got != "EPERM" {
				t.Fatalf("below the ancestor: got %q, want EPERM", got)
			}
			if got := s.run(t, "/bin/sh", script+"; true"); got == "EPERM" {
				t.Fatalf("outside the subtree: got %q, want it through (the probe is broken)", got)
			}
		})
	}
}

// A descendant of the ancestor sends to a destination a scoped connect
// rule denies over a raw socket (CAP_NET_RAW is in runtimes' default
// capability set). Such packets are judged at egress, in no process's
// context, where scoped rules were left out: the datagram arrived. Packets
// of raw, ping and SCTP sockets now fail closed there: scoped rules apply
// to them whatever process sent them.
func TestRedteam3ScopedConnectRuleOverRawSocket(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "raw")
	mark := newMarker(t)
	dst := newReceiver(t, "udp", netip.MustParseAddrPort("127.0.0.2:0"))
	nginx := filepath.Join(resolved(t, t.TempDir()), "nginx")
	copyExecutable(t, resolved(t, "/bin/sh"), nginx)
	ancestor, _, err := SplitPath(nginx)
	if err != nil {
		t.Fatal(err)
	}
	rs := Ruleset{ID: 12, Ancestors: [][]string{ancestor},
		Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.2/32"), PortHi: 65535, RuleID: 51, From: 1}}}
	enforce(t, e, cg, rs)
	send := func(t *testing.T, shell, kind string) (string, bool) {
		t.Helper()
		nonce := newNonce()
		cmd := command(cg, shell, "-c", `"$0" "$@"`, os.Args[0], kind, dst.addr.String(), string(nonce), mark.addr())
		cmd.Env = append(os.Environ(), helperEnv+"=escape")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("escape %s from %s: %v", kind, shell, err)
		}
		mark.wait(t, nonce)
		return strings.TrimSpace(string(out)), dst.got(nonce)
	}
	if res, arrived := send(t, nginx, "udp"); arrived {
		t.Fatalf("UDP below the ancestor arrived (%s): the scoped rule does not hold at all", res)
	}
	if res, arrived := send(t, nginx, "raw-udp"); arrived {
		t.Fatalf("raw UDP below the ancestor arrived (%s)", res)
	}
	if res, arrived := send(t, "/bin/sh", "udp"); !arrived {
		t.Fatalf("UDP outside the subtree did not arrive (%s): the probe is broken", res)
	}
}

// A process of the ancestor's subtree that started before its cgroup was
// registered has no table entry: it used to carry no classes, so scoped
// rules did not apply to it or its children. Its children now count as
// descended from every ancestor binary (the table cannot tell which).
func TestRedteam3ScopedRulesForProcessesStartedBeforeRegistration(t *testing.T) {
	s := newScopedEnv(t, nil)
	pre := s.env.cgroup(t, "pre")
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(pre.dir, "cgroup.kill"), []byte("1"), 0) })
	ready := filepath.Join(t.TempDir(), "registered")
	cmd := command(pre, s.nginx, "-c", "while [ ! -e "+ready+" ]; do :; done; "+s.id+" >/dev/null; echo rc=$?")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.e.SetCgroup(pre.id, 9); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ready, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got := strings.TrimSpace(out.String()); !strings.HasSuffix(got, "rc=137") {
		t.Fatalf("got %q, want rc=137", got)
	}
}

// An audited unscoped rule on the path of an enforcing scoped one is
// looked up first; it must not stop the enforcing rule's check.
func TestRedteam3AuditedRuleDoesNotHideScopedOne(t *testing.T) {
	s := newScopedEnv(t, nil)
	enforced := mustExecRule(t, s.id, 61)
	enforced.From = 1
	audited := mustExecRule(t, s.id, 60)
	audited.Audit = true
	// An audited directory prefix above it, too.
	auditedDir := mustExecRule(t, filepath.Dir(s.id)+"/", 62)
	auditedDir.Audit = true
	rs := Ruleset{ID: 13, Exec: []ExecRule{audited, auditedDir, enforced}, Ancestors: [][]string{s.ancestor}}
	s.apply(t, rs)
	script := s.id + " >/dev/null; echo rc=$?"
	if got := s.run(t, s.nginx, script); !strings.HasSuffix(got, "rc=137") {
		t.Fatalf("below the ancestor: got %q, want rc=137", got)
	}
	if got := s.run(t, "/bin/sh", script); got != "rc=0" {
		t.Fatalf("outside the subtree (audited only): got %q, want rc=0", got)
	}
}

package nri_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// The DaemonSet's pod from the image — the engine and the NRI sidecar,
// under podman with the manifest's settings and mounts — enforces a
// container started through containerd's CRI; the engine container is
// killed and started again and enforcement holds throughout; a ConfigMap
// update changes the running container's enforcement within 2 s, a broken
// one changes nothing and is reported.
func TestImageDaemonSetWithContainerd(t *testing.T) {
	c := sharedContainerd(t)
	ln := listen(t)
	node := harness.StartDaemonSetPod(t, harness.DaemonSetOptions{
		Policies:   map[string]string{"shop-web.yaml": shopExecPolicy},
		Containers: []string{"engine", "nri"},
		// The sidecar's /var/run/nri/nri.sock is this containerd's NRI socket.
		HostPaths: map[string]string{"/var/run/nri": c.dir},
	})
	waitFor(t, "the NRI sidecar registered with containerd", func() bool {
		return strings.Contains(node.Logs("nri"), "registered with runtime")
	})
	socket := node.Client().Socket

	p := c.runPod(t, "shop", "web-img", map[string]string{"app": "web"})
	id := p.run(t, "main", "/bin/sleep", "999")
	waitRegistrations(t, socket, "the pod's container registered by the sidecar", func(r map[string]api.Container) bool {
		return slices.Equal(r[id].Policies, []string{"shop-web"})
	})
	killed := func(when string) {
		t.Helper()
		if code, out := p.exec(t, id, "/bin/id"); code != killedExit {
			t.Fatalf("%s: /bin/id exited %d (%q), want killed", when, code, out)
		}
	}
	connect := func(msg string) string {
		_, out := p.exec(t, id, connectCmd(ln.port, msg)...)
		return out
	}
	killed("engine and NRI plugin from the image")
	if out := connect("before-update"); !strings.Contains(out, "rc=0") {
		t.Fatalf("connect before the ConfigMap update: %q, want it allowed", out)
	}

	node.Kill(t, "engine")
	killed("engine container killed")
	node.Start(t, "engine")
	node.WaitReady(t, func() { killed("engine container starting") })
	killed("engine container restarted")
	if r := registrations(t, socket); !slices.Equal(r[id].Policies, []string{"shop-web"}) {
		t.Errorf("restarted engine lost the registration: %+v", r[id])
	}

	// The ConfigMap gains a connect rule: the running container is held to
	// it within 2 s, and its exec rule never lapses meanwhile.
	if err := harness.WriteConfigMap(node.Policies, shopPolicy(ln.port)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for round := 0; ; round++ {
		killed("while the ConfigMap update is applied")
		out := connect(fmt.Sprintf("round-%d", round))
		if strings.Contains(out, "rc=1") && strings.Contains(out, "not permitted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ConfigMap update not in force within 2s: connect %q", out)
		}
	}

	// A broken update changes nothing and is reported.
	if err := harness.WriteConfigMap(node.Policies, map[string]string{"shop-web.yaml": shopExecPolicy + "  exec: {deny: [relative/path]}\n"}); err != nil {
		t.Fatal(err)
	}
	node.WaitEvents(t, api.ActionPolicyRefused, 2*time.Second)
	killed("after a broken update")
	if out := connect("after-broken"); !strings.Contains(out, "not permitted") {
		t.Errorf("after a broken update: connect %q, want still refused", out)
	}
	if st := node.Status(t); len(st.PolicyErrors) != 1 || !strings.HasSuffix(st.PolicyErrors[0].File, "shop-web.yaml") {
		t.Errorf("status after a broken update: want shop-web.yaml refused, got %+v", st.PolicyErrors)
	}
}

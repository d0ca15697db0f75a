// Package image_test runs the holdfast image (deploy/Containerfile) under
// podman as the DaemonSet of deploy/kubernetes/daemonset.yaml runs it
// (harness.StartDaemonSetPod), registering through the image's CLI.
package image_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// applyDeadline is how soon a ConfigMap update must be in force.
const applyDeadline = 2 * time.Second

func execPolicy(deny string) string {
	return fmt.Sprintf(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: shop-lockdown}
spec:
  selector: {namespaces: [shop], podLabels: {matchLabels: {app: web}}}
  exec: {deny: [%s]}
`, deny)
}

// copies of /usr/bin/id only this test runs.
func testBinaries(t *testing.T) (first, second string) {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile("/usr/bin/id")
	if err != nil {
		t.Fatal(err)
	}
	first, second = filepath.Join(dir, "first"), filepath.Join(dir, "second")
	for _, p := range []string{first, second} {
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return first, second
}

// The engine from the image, run as the DaemonSet runs it, enforces a
// cgroup registered through the image's CLI; survives being killed and
// started again; follows a ConfigMap update within 2 s; refuses a broken
// update, changing nothing, and reports it.
func TestImageAsDaemonSet(t *testing.T) {
	first, second := testBinaries(t)
	n := harness.StartDaemonSetPod(t, harness.DaemonSetOptions{Policies: map[string]string{"lockdown.yaml": execPolicy(first)}})
	cg := harness.NewCgroup(t)
	if out, err := n.Exec("engine", "/usr/local/bin/holdfast", "containers", "add", "--id", "ctr-1", "--cgroup-path", cg.Dir,
		"--namespace", "shop", "--pod", "web-0", "--label", "app=web", "--container", "main"); err != nil || !strings.Contains(out, "shop-lockdown") {
		t.Fatalf("containers add in the engine container: %v\n%s", err, out)
	}
	enforced := func(when string) {
		t.Helper()
		if r := cg.Run(t, first); !r.Killed() {
			t.Fatalf("%s: %s in the registered cgroup: want SIGKILL, got %v", when, first, r)
		}
	}
	enforced("engine from the image")
	if r := harness.RunOutside(first); r.ExitCode != 0 {
		t.Errorf("%s outside the registered cgroup: %v", first, r)
	}

	// Killed (SIGKILL, as a node-pressure kill or a crash) and started again,
	// as kubelet restarts the container: enforcement holds throughout.
	n.Kill(t, "engine")
	enforced("engine container killed")
	n.Start(t, "engine")
	n.WaitReady(t, func() { enforced("engine container starting") })
	if st := n.Status(t); !st.Adopted || st.Containers != 1 {
		t.Errorf("restarted engine: want the pins adopted and the registration kept, got adopted=%v containers=%d", st.Adopted, st.Containers)
	}
	enforced("engine container restarted")

	// A ConfigMap update: a new ..<ts> directory and the ..data swap.
	if err := harness.WriteConfigMap(n.Policies, map[string]string{"lockdown.yaml": execPolicy(second)}); err != nil {
		t.Fatal(err)
	}
	harness.WaitExecSwitch(t, cg, first, second, applyDeadline)

	// A broken update changes nothing and is reported.
	if err := harness.WriteConfigMap(n.Policies, map[string]string{"lockdown.yaml": execPolicy(first) + "  bogus: field\n"}); err != nil {
		t.Fatal(err)
	}
	refused := n.WaitEvents(t, api.ActionPolicyRefused, applyDeadline)
	if errs, _ := refused[0]["errors"].([]any); len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), "bogus") {
		t.Errorf("policy-refused event: want one file naming the bad field, got %v", refused[0])
	}
	if r := cg.Run(t, second); !r.Killed() {
		t.Errorf("after a broken update: %s want still killed, got %v", second, r)
	}
	if r := cg.Run(t, first); r.ExitCode != 0 {
		t.Errorf("after a broken update: %s must not be denied, got %v", first, r)
	}
	st := n.Status(t)
	if len(st.PolicyErrors) != 1 || st.PolicyErrors[0].File != "/etc/holdfast/policies.d/lockdown.yaml" || !st.Ready {
		t.Errorf("status after a broken update: want ready and lockdown.yaml refused, got ready=%v %+v", st.Ready, st.PolicyErrors)
	}
	if logs := n.Logs("engine"); !strings.Contains(logs, "policy directory change refused") {
		t.Errorf("engine log has no line about the refused update:\n%s", logs)
	}
}

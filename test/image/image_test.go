// Package image_test runs the holdfast image (deploy/Containerfile) under
// podman as the DaemonSet of deploy/kubernetes/daemonset.yaml runs it
// (harness.StartDaemonSetPod), registering through the image's CLI.
package image_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
	"github.com/holdfast-dev/holdfast/test/rootfs"
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

// The chart's crio runtime: the init container from the image installs the
// OCI hook into the host's hooks.d and libexec; podman reading that hooks.d
// as CRI-O does runs the hook, which registers the container with the
// engine from the image, and a denied binary dies at its first instruction.
func TestImageCRIOInitContainerInstallsHook(t *testing.T) {
	policy := `apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: shop-lockdown}
spec:
  selector: {namespaces: [shop]}
  exec: {deny: [/usr/bin/id]}
`
	var hooksDir string
	n := harness.StartDaemonSetPod(t, harness.DaemonSetOptions{
		Policies: map[string]string{"lockdown.yaml": policy},
		Render: func(p *harness.DaemonSetPod) string {
			hooksDir = filepath.Join(p.Dir, "hooks.d")
			out, err := exec.Command(harness.Helm(t), "template", "holdfast", filepath.Join(harness.RepoRoot(), "deploy", "helm", "holdfast"),
				"--namespace", "holdfast-system", "--set", "runtime=crio", "--set", "failMode=closed",
				"--set", "crio.hooksDir="+hooksDir, "--set", "crio.installDir="+filepath.Join(p.Dir, "libexec"),
				"--set", "crio.socketDir="+filepath.Join(p.Dir, "crio"),
				"--set", "hostPaths.bpffs="+p.BPFFS, "--set", "hostPaths.run="+p.Run,
				"--set", "hostPaths.state="+p.State, "--set", "hostPaths.log="+p.Log).Output()
			if err != nil {
				t.Fatalf("helm template --set runtime=crio: %v", err)
			}
			return string(out)
		},
	})
	if _, err := os.Stat(filepath.Join(n.Dir, "libexec", "holdfast-oci-hook")); err != nil {
		t.Fatalf("the init container did not install the hook binary: %v", err)
	}

	fs, err := rootfs.Build(filepath.Join(t.TempDir(), "rootfs"))
	if err != nil {
		require.Privileged(t, "busybox rootfs", err)
	}
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := exec.Command("tar", "-C", fs, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar rootfs: %v\n%s", err, out)
	}
	if out, err := n.Podman("import", tarball, "localhost/busybox-test").CombinedOutput(); err != nil {
		t.Fatalf("podman import: %v\n%s", err, out)
	}
	// CRI-O's annotations of an application container of pod shop/web-0.
	run := func(namespace string) (string, int) {
		out, err := n.Podman("run", "--rm", "--hooks-dir", hooksDir, "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1024:1024",
			"--annotation", "io.kubernetes.pod.namespace="+namespace, "--annotation", "io.kubernetes.pod.name=web-0",
			"--annotation", "io.kubernetes.container.name=main", "localhost/busybox-test", "/usr/bin/id").CombinedOutput()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return string(out), exitErr.ExitCode()
		} else if err != nil {
			t.Fatalf("podman run: %v\n%s", err, out)
		}
		return string(out), 0
	}
	if out, code := run("shop"); code != 137 || strings.Contains(out, "uid=") {
		t.Errorf("selected container: /usr/bin/id exited %d with %q, want SIGKILL (137) before any output\nhook log:\n%s", code, out, hookLog(n))
	}
	if out, code := run("other"); code != 0 || !strings.Contains(out, "uid=0") {
		t.Errorf("unselected container: /usr/bin/id exited %d with %q, want it to run", code, out)
	}
}

func hookLog(n *harness.DaemonSetPod) string {
	data, _ := os.ReadFile(filepath.Join(n.Log, "oci-hook.log"))
	return string(data)
}

// Package image_test runs the holdfast image (deploy/Containerfile) under
// podman as the DaemonSet of deploy/kubernetes/daemonset.yaml runs it: the
// same command, security context, host PID namespace and mounts, translated
// from the manifest itself, with the host paths moved to a test directory
// and the policy ConfigMap laid out as kubelet lays out its volume.
package image_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/linux"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// applyDeadline is how soon a ConfigMap update must be in force.
const applyDeadline = 2 * time.Second

const imageTag = "localhost/holdfast:image-test"

// daemonSet reads the DaemonSet of the plain manifest.
func daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "kubernetes", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var ds appsv1.DaemonSet
		if err := yaml.UnmarshalStrict([]byte(doc), &ds); err == nil && ds.Kind == "DaemonSet" {
			return &ds
		}
	}
	t.Fatal("deploy/kubernetes/daemonset.yaml has no DaemonSet")
	return nil
}

// podmanRunArgs translates the DaemonSet's engine container into podman
// run flags. hostDir maps each volume to the directory it stands for here.
// Anything of the container this translation does not know is an error, so
// the manifest cannot grow a setting this test silently ignores.
func podmanRunArgs(ds *appsv1.DaemonSet, hostDir func(corev1.Volume) (string, error)) ([]string, *corev1.Container, error) {
	pod := ds.Spec.Template.Spec
	var engine *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == "engine" {
			engine = &pod.Containers[i]
		}
	}
	if engine == nil {
		return nil, nil, errors.New("no engine container")
	}
	if len(engine.Args) > 0 || len(engine.Env) > 0 || len(engine.EnvFrom) > 0 || engine.WorkingDir != "" || len(engine.Command) == 0 {
		return nil, nil, fmt.Errorf("engine container has settings this test does not translate: %+v", engine)
	}
	// The machine lacks CAP_SYS_RESOURCE (see the README's test notes).
	args := []string{"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1024:1024"}
	if pod.HostPID {
		args = append(args, "--pid=host")
	}
	if sc := engine.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
		args = append(args, "--privileged")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range engine.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			return nil, nil, fmt.Errorf("mount %s: no volume", m.Name)
		}
		src, err := hostDir(v)
		if err != nil {
			return nil, nil, err
		}
		opts := []string{}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		if m.MountPropagation != nil {
			switch *m.MountPropagation {
			case corev1.MountPropagationBidirectional:
				opts = append(opts, "rshared")
			case corev1.MountPropagationHostToContainer:
				opts = append(opts, "rslave")
			}
		}
		spec := src + ":" + m.MountPath
		if len(opts) > 0 {
			spec += ":" + strings.Join(opts, ",")
		}
		args = append(args, "-v", spec)
	}
	args = append(args, "--entrypoint", engine.Command[0], imageTag)
	return append(args, engine.Command[1:]...), engine, nil
}

// node is the test's stand-in for a node's host paths and its engine pod.
type node struct {
	dir, bpffs, run, state, log, policies, cri string
	podman                                     []string // podman with its own storage
	name                                       string   // engine container
	engine                                     *corev1.Container
	host                                       string // holdfast binary on the host (cleanup)
}

func (n *node) cmd(args ...string) *exec.Cmd {
	return exec.Command(n.podman[0], append(append([]string{}, n.podman[1:]...), args...)...)
}

func (n *node) mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.cmd(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// exec runs a command in the engine container, as kubelet runs exec probes.
func (n *node) exec(args ...string) (string, error) {
	out, err := n.cmd(append([]string{"exec", n.name}, args...)...).CombinedOutput()
	return string(out), err
}

// waitReady runs the DaemonSet's readiness probe until it passes; check
// runs between probes (enforcement while the engine starts).
func (n *node) waitReady(t *testing.T, check func()) {
	t.Helper()
	probe := n.engine.ReadinessProbe
	if probe == nil || probe.Exec == nil {
		t.Fatal("the DaemonSet's engine has no exec readiness probe")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := n.exec(probe.Exec.Command...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			logs, _ := n.cmd("logs", n.name).CombinedOutput()
			t.Fatalf("engine not ready within 60s: %v: %s\nengine log:\n%s", err, out, logs)
		}
		if check != nil {
			check()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *node) status(t *testing.T) *api.Status {
	t.Helper()
	st, err := (&api.Client{Socket: filepath.Join(n.run, "engine.sock")}).Status(context.Background())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func (n *node) events(t *testing.T, action string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.log, "events.jsonl"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(data), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["action"] == action {
			out = append(out, ev)
		}
	}
	return out
}

// startNode builds the image from deploy/Containerfile, lays out the host
// paths and starts the engine container the way the DaemonSet does.
func startNode(t *testing.T, policies map[string]string) *node {
	t.Helper()
	require.Root(t)
	bin, err := exec.LookPath("podman")
	if err != nil {
		require.Privileged(t, "podman (apt-get install podman)", err)
	}
	// Short: podman refuses a runroot longer than 50 characters.
	dir, err := os.MkdirTemp("", "hf-image-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		dir: dir, bpffs: filepath.Join(dir, "bpffs"), run: filepath.Join(dir, "run"), state: filepath.Join(dir, "state"),
		log: filepath.Join(dir, "log"), policies: filepath.Join(dir, "policies"), cri: filepath.Join(dir, "cri"),
		name: "holdfast-image-test-" + filepath.Base(dir),
		host: harness.Build(t, "./engine/cmd/holdfast"),
		podman: []string{bin, "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs"},
	}
	for _, d := range []string{n.bpffs, n.run, n.state, n.log, n.cri} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A bpffs of its own, shared so the container's pins land here.
	if err := linux.MountBPFFS(n.bpffs); err != nil {
		require.Privileged(t, "bpffs mount", err)
	}
	if out, err := exec.Command("mount", "--make-rshared", n.bpffs).CombinedOutput(); err != nil {
		t.Fatalf("make bpffs shared: %v: %s", err, out)
	}
	t.Cleanup(func() {
		n.cmd("rm", "--force", "--time", "5", n.name).Run()
		out, err := exec.Command(n.host, "uninstall", "--bpf-dir", filepath.Join(n.bpffs, "holdfast"), "--state-dir", n.state,
			"--socket", filepath.Join(n.run, "engine.sock")).CombinedOutput()
		if err != nil {
			t.Errorf("uninstall the engine's pins: %v\n%s", err, out)
		}
		n.cmd("rmi", "--all", "--force").Run()
		linux.Unmount(n.bpffs)
		harness.UnmountBelow(t, dir)
		os.RemoveAll(dir)
	})
	if err := harness.WriteConfigMap(n.policies, policies); err != nil {
		t.Fatal(err)
	}

	// The image, exactly as `make image` builds it.
	ctx := filepath.Dir(harness.Build(t, "./engine/cmd/holdfast"))
	for _, pkg := range []string{"./hook/cmd/holdfast-oci-hook", "./nri-plugin/cmd/holdfast-nri"} {
		if b := harness.Build(t, pkg); filepath.Dir(b) != ctx {
			t.Fatalf("binaries built into different directories: %s, %s", ctx, b)
		}
	}
	n.mustPodman(t, "build", "-f", filepath.Join(harness.RepoRoot(), "deploy", "Containerfile"), "-t", imageTag, ctx)

	ds := daemonSet(t)
	hostPaths := map[string]string{
		"/sys/fs/bpf": n.bpffs, "/run/holdfast": n.run, "/var/lib/holdfast": n.state,
		"/var/log/holdfast": n.log, "/run/containerd": n.cri, "/sys/fs/cgroup": "/sys/fs/cgroup",
	}
	args, engine, err := podmanRunArgs(ds, func(v corev1.Volume) (string, error) {
		switch {
		case v.ConfigMap != nil:
			return n.policies, nil
		case v.HostPath != nil && hostPaths[v.HostPath.Path] != "":
			return hostPaths[v.HostPath.Path], nil
		}
		return "", fmt.Errorf("volume %s: no stand-in for %+v", v.Name, v.VolumeSource)
	})
	if err != nil {
		t.Fatalf("translate the DaemonSet: %v", err)
	}
	n.engine = engine
	n.mustPodman(t, append([]string{"run", "--detach", "--name", n.name}, args...)...)
	n.waitReady(t, nil)
	return n
}

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
	n := startNode(t, map[string]string{"lockdown.yaml": execPolicy(first)})
	cg := harness.NewCgroup(t)
	if out, err := n.exec("/usr/local/bin/holdfast", "containers", "add", "--id", "ctr-1", "--cgroup-path", cg.Dir,
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
	n.mustPodman(t, "kill", n.name)
	n.mustPodman(t, "wait", n.name)
	enforced("engine container killed")
	n.mustPodman(t, "start", n.name)
	n.waitReady(t, func() { enforced("engine container starting") })
	if st := n.status(t); !st.Adopted || st.Containers != 1 {
		t.Errorf("restarted engine: want the pins adopted and the registration kept, got adopted=%v containers=%d", st.Adopted, st.Containers)
	}
	enforced("engine container restarted")

	// A ConfigMap update: a new ..<ts> directory and the ..data swap.
	if err := harness.WriteConfigMap(n.policies, map[string]string{"lockdown.yaml": execPolicy(second)}); err != nil {
		t.Fatal(err)
	}
	harness.WaitExecSwitch(t, cg, first, second, applyDeadline)

	// A broken update changes nothing and is reported.
	if err := harness.WriteConfigMap(n.policies, map[string]string{"lockdown.yaml": execPolicy(first) + "  bogus: field\n"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(applyDeadline)
	for len(n.events(t, api.ActionPolicyRefused)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("broken ConfigMap update not reported in the events stream within %v", applyDeadline)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := cg.Run(t, second); !r.Killed() {
		t.Errorf("after a broken update: %s want still killed, got %v", second, r)
	}
	if r := cg.Run(t, first); r.ExitCode != 0 {
		t.Errorf("after a broken update: %s must not be denied, got %v", first, r)
	}
	st := n.status(t)
	if len(st.PolicyErrors) != 1 || st.PolicyErrors[0].File != "/etc/holdfast/policies.d/lockdown.yaml" || !st.Ready {
		t.Errorf("status after a broken update: want ready and lockdown.yaml refused, got ready=%v %+v", st.Ready, st.PolicyErrors)
	}
	if logs, _ := n.cmd("logs", n.name).CombinedOutput(); !strings.Contains(string(logs), "policy directory change refused") {
		t.Errorf("engine log has no line about the refused update:\n%s", logs)
	}
}

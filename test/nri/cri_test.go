package nri_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/cri"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// criInterval is the reconcile period the tests run the engine with.
const criInterval = 2 * time.Second

// waitWithin polls cond until it holds or d has passed.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A container started through containerd's CRI while no NRI plugin runs is
// found by the running engine's CRI reconcile within one period, enforced,
// listed as source cri, and unregistered once removed.
func TestCRIReconcileWithoutNRI(t *testing.T) {
	c := sharedContainerd(t)
	ln := listen(t)
	e := harness.StartEngine(t, harness.Options{
		Policies: shopPolicy(ln.port),
		Args:     []string{"--cri-endpoint", "unix://" + c.address, "--cri-reconcile-interval", criInterval.String()},
	})
	p := c.runPod(t, "shop", "web-reconcile", map[string]string{"app": "web"})
	id := p.run(t, "main", "/bin/sleep", "999")
	started := time.Now()

	// One period, plus the time one reconcile run takes.
	var r api.Container
	waitWithin(t, criInterval+3*time.Second, "container "+id+" registered from the CRI", func() bool {
		var ok bool
		r, ok = registrations(t, e.Socket)[id]
		return ok
	})
	t.Logf("registered %v after start", time.Since(started).Round(time.Millisecond))
	if r.Source != cri.Source || r.Namespace != "shop" || r.Pod != "web-reconcile" || r.Labels["app"] != "web" ||
		r.Name != "main" || r.Image != testImage || !slices.Contains(r.Policies, "shop-web") {
		t.Fatalf("registration %+v: want source cri, main of shop/web-reconcile labelled app=web, image %s, policy shop-web", r, testImage)
	}
	out, err := exec.Command(e.Bin, "containers", "list", "--socket", e.Socket).CombinedOutput()
	if err != nil || !strings.Contains(string(out), id) || !strings.Contains(string(out), " cri ") {
		t.Errorf("containers list does not show %s as source cri (%v):\n%s", id, err, out)
	}
	if code, out := p.exec(t, id, "/bin/id"); code != killedExit {
		t.Errorf("reconciled container: /bin/id exited %d (%q), want killed", code, out)
	}
	if code, out := p.exec(t, id, "/bin/true"); code != 0 {
		t.Errorf("reconciled container: /bin/true exited %d (%q)", code, out)
	}

	p.removeContainer(t, id)
	waitWithin(t, criInterval+3*time.Second, "container "+id+" unregistered after removal", func() bool {
		_, ok := registrations(t, e.Socket)[id]
		return !ok
	})
}

// The OCI hook run on the real bundle of a containerd CRI container (whose
// annotations carry the sandbox id but no labels) gets the pod's labels
// from the runtime's PodSandboxStatus, and the pod-label policy applies.
func TestHookPodLabelsFromCRI(t *testing.T) {
	c := sharedContainerd(t)
	ln := listen(t)
	// Reconcile only at start, before the pod exists: the labels must come
	// from the hook's registration and PodSandboxStatus, not from a listing.
	e := harness.StartEngine(t, harness.Options{
		Policies: shopPolicy(ln.port),
		Args:     []string{"--cri-endpoint", "unix://" + c.address, "--cri-reconcile-interval", "0"},
	})
	p := c.runPod(t, "shop", "web-fixture", map[string]string{"app": "web", "tier": "front"})
	id := p.run(t, "main", "/bin/sleep", "999")
	if _, ok := registrations(t, e.Socket)[id]; ok {
		t.Fatalf("%s registered before the hook ran", id)
	}
	bundle := filepath.Join(c.dir, "state", "io.containerd.runtime.v2.task", "k8s.io", id)
	config := readSpecAnnotations(t, filepath.Join(bundle, "config.json"))
	if config["io.kubernetes.cri.sandbox-id"] != p.id || config["io.kubernetes.cri.container-type"] != "container" {
		t.Fatalf("bundle %s: annotations %v do not name sandbox %s", bundle, config, p.id)
	}
	if os.Getenv("HOLDFAST_UPDATE_FIXTURES") == "1" {
		writeContainerdFixtures(t, c, p, id, config)
	}
	pid := containerPid(t, p, id)

	hook := harness.Build(t, "./hook/cmd/holdfast-oci-hook")
	cmd := exec.Command(hook, "--stage", "createRuntime", "--socket", e.Socket, "--fail-mode", "closed", "--log", "-")
	cmd.Stdin = strings.NewReader(harness.OCIState(id, "creating", pid, bundle, nil))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hook on %s: %v\n%s", bundle, err, out)
	}
	r, ok := registrations(t, e.Socket)[id]
	if !ok || r.Labels["app"] != "web" || r.Labels["tier"] != "front" || r.Namespace != "shop" || r.Pod != "web-fixture" ||
		r.SandboxID != p.id || !slices.Contains(r.Policies, "shop-web") {
		t.Fatalf("hook registration %+v: want pod labels app=web, tier=front from sandbox %s and policy shop-web", r, p.id)
	}
	if code, out := p.exec(t, id, "/bin/id"); code != killedExit {
		t.Errorf("/bin/id exited %d (%q), want killed", code, out)
	}
}

func readSpecAnnotations(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return spec.Annotations
}

func containerPid(t *testing.T, p *pod, id string) int {
	t.Helper()
	var info struct {
		Pid int `json:"pid"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := p.c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("status of %s: %v", id, err)
	}
	st := resp.GetInfo()["info"]
	if err := json.Unmarshal([]byte(st), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("pid of %s from verbose status: %v (%s)", id, err, st)
	}
	return info.Pid
}

// writeContainerdFixtures refreshes hook/testdata's containerd fixtures
// from a real pod, with its ids replaced by fixed ones.
func writeContainerdFixtures(t *testing.T, c *containerd, p *pod, id string, config map[string]string) {
	t.Helper()
	sandbox := readSpecAnnotations(t, filepath.Join(c.dir, "state", "io.containerd.runtime.v2.task", "k8s.io", p.id, "config.json"))
	replacer := strings.NewReplacer(p.id, "containerd-fixture-sandbox", id, "containerd-fixture-container",
		p.config.GetMetadata().GetUid(), "containerd-fixture-uid", c.dir, "/var/lib/containerd-fixture")
	for name, a := range map[string]map[string]string{"containerd-sandbox.json": sandbox, "containerd-container.json": config} {
		out := map[string]string{}
		for k, v := range a {
			out[k] = replacer.Replace(v)
		}
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(harness.RepoRoot(), "hook", "testdata", name), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

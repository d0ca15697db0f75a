package harness

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

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/require"
)

// ImageTag is the tag the tests build deploy/Containerfile under, in
// podman storage of their own.
const ImageTag = "localhost/holdfast:image-test"

// DaemonSetPod is the holdfast pod of deploy/kubernetes/daemonset.yaml run
// under podman from the image deploy/Containerfile builds: each container
// of the pod a podman container with the same command, security context,
// host PID namespace and mounts, translated from the manifest itself. Host
// paths move to a test directory (HostPaths); the policy ConfigMap is a
// directory laid out as kubelet lays out its volume (Policies).
type DaemonSetPod struct {
	Dir string
	// HostPaths maps each hostPath volume of the manifest to its stand-in.
	HostPaths map[string]string
	// BPFFS, Run, State, Log and Policies are the stand-ins of the pins'
	// bpffs, the socket dir, the state dir, the events log dir and the
	// ConfigMap volume.
	BPFFS, Run, State, Log, Policies string

	podman     []string
	containers map[string]*corev1.Container // by the manifest's name
	prefix     string                       // of podman container names
	host       string                       // holdfast on the host, for cleanup
}

// DaemonSetOptions for StartDaemonSetPod.
type DaemonSetOptions struct {
	// Policies are the ConfigMap's files.
	Policies map[string]string
	// Containers of the pod to run (default: the engine only).
	Containers []string
	// HostPaths adds or overrides stand-ins of hostPath volumes.
	HostPaths map[string]string
	// Render returns the manifest to run (default:
	// deploy/kubernetes/daemonset.yaml), given the pod's directories: a
	// chart rendered with host paths below Dir, which stand for themselves.
	Render func(p *DaemonSetPod) string
}

// StartDaemonSetPod builds the image, lays out the host paths and starts
// the pod's containers, then waits for the engine's readiness probe.
func StartDaemonSetPod(t testing.TB, opts DaemonSetOptions) *DaemonSetPod {
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
	p := &DaemonSetPod{
		Dir: dir, BPFFS: filepath.Join(dir, "bpffs"), Run: filepath.Join(dir, "run"), State: filepath.Join(dir, "state"),
		Log: filepath.Join(dir, "log"), Policies: filepath.Join(dir, "policies"),
		prefix: "holdfast-" + filepath.Base(dir) + "-",
		host:   Build(t, "./engine/cmd/holdfast"),
		podman: []string{bin, "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs"},
	}
	p.HostPaths = map[string]string{
		"/sys/fs/bpf": p.BPFFS, "/run/holdfast": p.Run, "/var/lib/holdfast": p.State, "/var/log/holdfast": p.Log,
		"/sys/fs/cgroup": "/sys/fs/cgroup", "/run/containerd": filepath.Join(dir, "containerd"), "/var/run/nri": filepath.Join(dir, "nri"),
	}
	for k, v := range opts.HostPaths {
		p.HostPaths[k] = v
	}
	for _, d := range []string{p.BPFFS, p.Run, p.State, p.Log, p.HostPaths["/run/containerd"], p.HostPaths["/var/run/nri"]} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A bpffs of its own, shared so the engine's pins land here.
	if err := linux.MountBPFFS(p.BPFFS); err != nil {
		require.Privileged(t, "bpffs mount", err)
	}
	if out, err := exec.Command("mount", "--make-rshared", p.BPFFS).CombinedOutput(); err != nil {
		t.Fatalf("make bpffs shared: %v: %s", err, out)
	}
	t.Cleanup(func() {
		for name := range p.containers {
			p.cmd("rm", "--force", "--time", "5", p.prefix+name).Run()
		}
		out, err := exec.Command(p.host, "uninstall", "--bpf-dir", filepath.Join(p.BPFFS, "holdfast"), "--state-dir", p.State,
			"--socket", filepath.Join(p.Run, "engine.sock")).CombinedOutput()
		if err != nil {
			t.Errorf("uninstall the engine's pins: %v\n%s", err, out)
		}
		p.cmd("rmi", "--all", "--force").Run()
		linux.Unmount(p.BPFFS)
		UnmountBelow(t, dir)
		os.RemoveAll(dir)
	})
	if err := WriteConfigMap(p.Policies, opts.Policies); err != nil {
		t.Fatal(err)
	}

	// The image, as `make image` builds it: bin/ with the three binaries.
	ctx := filepath.Dir(p.host)
	for _, pkg := range []string{"./hook/cmd/holdfast-oci-hook", "./nri-plugin/cmd/holdfast-nri"} {
		if b := Build(t, pkg); filepath.Dir(b) != ctx {
			t.Fatalf("binaries built into different directories: %s, %s", ctx, b)
		}
	}
	p.mustPodman(t, "build", "-f", filepath.Join(RepoRoot(), "deploy", "Containerfile"), "-t", ImageTag, ctx)

	manifest := ""
	if opts.Render != nil {
		manifest = opts.Render(p)
	} else {
		data, err := os.ReadFile(filepath.Join(RepoRoot(), "deploy", "kubernetes", "daemonset.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		manifest = string(data)
	}
	ds := daemonSetOf(t, manifest)
	// Init containers run to completion first, as kubelet runs them.
	for _, c := range ds.Spec.Template.Spec.InitContainers {
		args, _, err := podmanRunArgs(ds, c.Name, p.hostDir)
		if err != nil {
			t.Fatalf("translate the DaemonSet's init container %s: %v", c.Name, err)
		}
		p.mustPodman(t, append([]string{"run", "--rm", "--name", p.prefix + c.Name}, args...)...)
	}
	names := opts.Containers
	if len(names) == 0 {
		names = []string{"engine"}
	}
	p.containers = map[string]*corev1.Container{}
	for _, name := range names {
		args, c, err := podmanRunArgs(ds, name, p.hostDir)
		if err != nil {
			t.Fatalf("translate the DaemonSet's %s container: %v", name, err)
		}
		p.containers[name] = c
		p.mustPodman(t, append([]string{"run", "--detach", "--name", p.prefix + name}, args...)...)
		if name == "engine" {
			p.WaitReady(t, nil)
		}
	}
	return p
}

func (p *DaemonSetPod) hostDir(v corev1.Volume) (string, error) {
	switch {
	case v.ConfigMap != nil:
		return p.Policies, nil
	case v.HostPath != nil && p.HostPaths[v.HostPath.Path] != "":
		return p.HostPaths[v.HostPath.Path], nil
	case v.HostPath != nil && strings.HasPrefix(v.HostPath.Path, p.Dir+"/"):
		return v.HostPath.Path, os.MkdirAll(v.HostPath.Path, 0o755)
	}
	return "", fmt.Errorf("volume %s: no stand-in for %+v", v.Name, v.VolumeSource)
}

// daemonSetOf finds the DaemonSet in a manifest.
func daemonSetOf(t testing.TB, manifest string) *appsv1.DaemonSet {
	t.Helper()
	for _, doc := range strings.Split(manifest, "\n---\n") {
		var ds appsv1.DaemonSet
		if err := yaml.UnmarshalStrict([]byte(doc), &ds); err == nil && ds.Kind == "DaemonSet" {
			return &ds
		}
	}
	t.Fatal("the manifest has no DaemonSet")
	return nil
}

// podmanRunArgs translates one container of the DaemonSet into podman run
// flags. Anything of the container this translation does not know is an
// error, so the manifest cannot grow a setting the tests silently ignore.
func podmanRunArgs(ds *appsv1.DaemonSet, name string, hostDir func(corev1.Volume) (string, error)) ([]string, *corev1.Container, error) {
	pod := ds.Spec.Template.Spec
	var c *corev1.Container
	for _, list := range [][]corev1.Container{pod.InitContainers, pod.Containers} {
		for i := range list {
			if list[i].Name == name {
				c = &list[i]
			}
		}
	}
	if c == nil {
		return nil, nil, fmt.Errorf("no %s container", name)
	}
	if len(c.Args) > 0 || len(c.Env) > 0 || len(c.EnvFrom) > 0 || c.WorkingDir != "" || len(c.Command) == 0 {
		return nil, nil, errors.New("container has settings this translation does not know")
	}
	// The machine lacks CAP_SYS_RESOURCE: podman's default limits fail.
	args := []string{"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1024:1024"}
	if pod.HostPID {
		args = append(args, "--pid=host")
	}
	if sc := c.SecurityContext; sc != nil && sc.Privileged != nil && *sc.Privileged {
		args = append(args, "--privileged")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			return nil, nil, fmt.Errorf("mount %s: no volume", m.Name)
		}
		src, err := hostDir(v)
		if err != nil {
			return nil, nil, err
		}
		var opts []string
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
	args = append(args, "--entrypoint", c.Command[0], ImageTag)
	return append(args, c.Command[1:]...), c, nil
}

func (p *DaemonSetPod) cmd(args ...string) *exec.Cmd {
	return exec.Command(p.podman[0], append(append([]string{}, p.podman[1:]...), args...)...)
}

func (p *DaemonSetPod) mustPodman(t testing.TB, args ...string) string {
	t.Helper()
	out, err := p.cmd(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Exec runs a command in one of the pod's containers, as kubelet runs exec
// probes.
func (p *DaemonSetPod) Exec(container string, args ...string) (string, error) {
	out, err := p.cmd(append([]string{"exec", p.prefix + container}, args...)...).CombinedOutput()
	return string(out), err
}

// Kill kills a container of the pod with SIGKILL and waits for it to end.
func (p *DaemonSetPod) Kill(t testing.TB, container string) {
	t.Helper()
	p.mustPodman(t, "kill", p.prefix+container)
	p.mustPodman(t, "wait", p.prefix+container)
}

// Start starts a stopped container again, as kubelet restarts one.
func (p *DaemonSetPod) Start(t testing.TB, container string) {
	t.Helper()
	p.mustPodman(t, "start", p.prefix+container)
}

// Logs is a container's output.
func (p *DaemonSetPod) Logs(container string) string {
	out, _ := p.cmd("logs", p.prefix+container).CombinedOutput()
	return string(out)
}

// WaitReady runs the engine's readiness probe until it passes; check runs
// between tries (enforcement while the engine starts).
func (p *DaemonSetPod) WaitReady(t testing.TB, check func()) {
	t.Helper()
	probe := p.containers["engine"].ReadinessProbe
	if probe == nil || probe.Exec == nil {
		t.Fatal("the DaemonSet's engine has no exec readiness probe")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := p.Exec("engine", probe.Exec.Command...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine not ready within 60s: %v: %s\nengine log:\n%s", err, out, p.Logs("engine"))
		}
		if check != nil {
			check()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Client talks to the engine through the socket's stand-in.
func (p *DaemonSetPod) Client() *api.Client {
	return &api.Client{Socket: filepath.Join(p.Run, "engine.sock")}
}

// Status is the engine's status.
func (p *DaemonSetPod) Status(t testing.TB) *api.Status {
	t.Helper()
	st, err := p.Client().Status(context.Background())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// Events are the lines of the engine's events file with this action.
func (p *DaemonSetPod) Events(t testing.TB, action string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(p.Log, "events.jsonl"))
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

// WaitEvents waits up to within for an event of this action to be written.
func (p *DaemonSetPod) WaitEvents(t testing.TB, action string, within time.Duration) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if evs := p.Events(t, action); len(evs) > 0 {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event within %v", action, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Podman runs podman on the pod's own storage (images, containers).
func (p *DaemonSetPod) Podman(args ...string) *exec.Cmd { return p.cmd(args...) }

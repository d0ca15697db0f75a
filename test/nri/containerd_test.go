package nri_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

// The package shares one containerd: starting one per test would dominate
// the run time. Every test removes its own pods.
var (
	shared     *containerd
	sharedErr  error
	sharedOnce sync.Once
)

func TestMain(m *testing.M) {
	code := harness.Main(m)
	if shared != nil {
		if err := shared.destroy(); err != nil {
			fmt.Fprintln(os.Stderr, "clean up containerd:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// containerd is an isolated containerd with CRI and NRI: its own root,
// state, sockets, runc root and cgroup parent under one temp dir.
type containerd struct {
	dir, bin, config, address, nriSocket, pluginDir, pluginConfDir, runcRoot, logFile string
	cgroupParent                                                                      string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	conn *grpc.ClientConn
	rt   cri.RuntimeServiceClient
}

// containerdBinDir is where test/scripts/build-containerd.sh caches the build.
func containerdBinDir() string {
	if d := os.Getenv("HOLDFAST_CONTAINERD_BIN"); d != "" {
		return d
	}
	return "/var/cache/holdfast/containerd-v2.4.2/bin"
}

// sharedContainerd starts the package's containerd on first use.
func sharedContainerd(t testing.TB) *containerd {
	t.Helper()
	require.Root(t)
	sharedOnce.Do(func() { shared, sharedErr = startContainerd() })
	require.Privileged(t, "containerd v2.4 with NRI and runc", sharedErr)
	return shared
}

func startContainerd() (*containerd, error) {
	if _, err := os.Stat("/usr/sbin/runc"); err != nil {
		return nil, fmt.Errorf("runc (apt-get install runc): %w", err)
	}
	binDir := containerdBinDir()
	if _, err := os.Stat(filepath.Join(binDir, "containerd")); err != nil {
		// Build it once; the script caches the result for later runs.
		script := filepath.Join(harness.RepoRoot(), "test", "scripts", "build-containerd.sh")
		cmd := exec.Command(script, binDir)
		cmd.Env = append(os.Environ(), "WITH_CRICTL=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build containerd with %s: %w\n%s", script, err, out)
		}
	}
	// Short: the sockets below must fit sun_path.
	dir, err := os.MkdirTemp("", "hfc-")
	if err != nil {
		return nil, err
	}
	c := &containerd{
		dir:           dir,
		bin:           binDir,
		config:        filepath.Join(dir, "config.toml"),
		address:       filepath.Join(dir, "c.sock"),
		nriSocket:     filepath.Join(dir, "nri.sock"),
		pluginDir:     filepath.Join(dir, "nri-plugins"),
		pluginConfDir: filepath.Join(dir, "nri-conf.d"),
		runcRoot:      filepath.Join(dir, "runc"),
		logFile:       filepath.Join(dir, "containerd.log"),
		cgroupParent:  "/holdfast-nri-test-" + filepath.Base(dir),
	}
	fail := func(err error) (*containerd, error) {
		c.destroy()
		return nil, err
	}
	for _, d := range []string{c.pluginDir, c.pluginConfDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
	}
	if err := os.WriteFile(c.config, []byte(c.configTOML()), 0o644); err != nil {
		return fail(err)
	}
	if err := c.start(); err != nil {
		return fail(err)
	}
	archive := filepath.Join(dir, "image.tar")
	if err := writeImageArchive(filepath.Join(dir, "image"), archive); err != nil {
		return fail(fmt.Errorf("build test image: %w", err))
	}
	ctr := exec.Command(filepath.Join(binDir, "ctr"), "--address", c.address, "-n", "k8s.io", "images", "import", archive)
	if out, err := ctr.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("import test image: %w\n%s", err, out))
	}
	return c, nil
}

func (c *containerd) configTOML() string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = %[5]q
  plugin_path = %[6]q
  plugin_config_path = %[7]q

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %[8]q

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '/usr/sbin/runc'
  Root = %[9]q
`, filepath.Join(c.dir, "root"), filepath.Join(c.dir, "state"), c.address, c.address+".ttrpc",
		c.nriSocket, c.pluginDir, c.pluginConfDir, testImage, c.runcRoot)
}

// start runs containerd and waits until its CRI answers.
func (c *containerd) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	logf, err := os.OpenFile(c.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(c.bin, "containerd"), "--config", c.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The shims containerd-shim-runc-v2 finds by PATH; runc is set in the config.
	cmd.Env = append(os.Environ(), "PATH="+c.bin+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start containerd: %w", err)
	}
	c.cmd = cmd
	c.done = make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); logf.Close(); close(done) }(c.done)

	if c.conn == nil {
		conn, err := grpc.NewClient("unix://"+c.address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		c.conn = conn
		c.rt = cri.NewRuntimeServiceClient(conn)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.rt.Status(ctx, &cri.StatusRequest{})
		cancel()
		if err == nil && runtimeReady(st) {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("containerd exited during start-up:\n%s", c.log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd CRI not ready within 60s (%v):\n%s", err, c.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runtimeReady(st *cri.StatusResponse) bool {
	for _, cond := range st.GetStatus().GetConditions() {
		if cond.GetType() == cri.RuntimeReady {
			return cond.GetStatus()
		}
	}
	return false
}

// stop ends containerd (SIGTERM); containers keep running in their shims.
func (c *containerd) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	harness.StopProcess(c.cmd.Process, c.done, 30*time.Second)
	c.cmd = nil
	return nil
}

// restart stops and starts containerd, as an upgrade or crash recovery would.
func (c *containerd) restart(t testing.TB) {
	t.Helper()
	c.stop()
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
}

func (c *containerd) log() string {
	b, _ := os.ReadFile(c.logFile)
	return string(b)
}

// destroy removes every pod, stops containerd, kills leftover shims and
// containers, unmounts and deletes everything under the temp dir and the
// cgroup parent.
func (c *containerd) destroy() error {
	var errs []error
	if c.rt != nil && c.cmd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if pods, err := c.rt.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{}); err == nil {
			for _, p := range pods.GetItems() {
				c.rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.GetId()})
				if _, err := c.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
					errs = append(errs, fmt.Errorf("remove pod %s: %w", p.GetId(), err))
				}
			}
		}
		cancel()
	}
	c.stop()
	if c.conn != nil {
		c.conn.Close()
	}
	// Shims outlive containerd by design; these ones are ours.
	for _, pid := range shimsOf(c.address) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if out, err := exec.Command("/usr/sbin/runc", "--root", c.runcRoot, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			exec.Command("/usr/sbin/runc", "--root", c.runcRoot, "delete", "--force", id).Run()
		}
	}
	for _, m := range mountsUnder(c.dir) {
		if err := linux.Unmount(m); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, removeCgroupTree(c.cgroupParent)...)
	return errors.Join(errs...)
}

// shimsOf finds containerd-shim-runc-v2 processes serving address.
func shimsOf(address string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-runc-v2" {
			continue
		}
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == address {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// removeCgroupTree removes the cgroup parent in every hierarchy (v1
// controllers and v2), children first.
func removeCgroupTree(parent string) []error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []error{err}
	}
	defer f.Close()
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		i := indexOf(fields, "-")
		if i < 0 || i+1 >= len(fields) || (fields[i+1] != "cgroup" && fields[i+1] != "cgroup2") {
			continue
		}
		root := filepath.Join(fields[4], parent)
		var dirs []string
		filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// pod is a running pod sandbox of the test containerd.
type pod struct {
	c      *containerd
	id     string
	config *cri.PodSandboxConfig
}

// runPod starts a host-network pod; Cleanup removes it and its containers.
func (c *containerd) runPod(t testing.TB, namespace, name string, labels map[string]string) *pod {
	t.Helper()
	uid := randomID()
	logDir := filepath.Join(c.dir, "logs", uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	config := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid},
		LogDirectory: logDir,
		Labels:       labels,
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent: c.cgroupParent,
			SecurityContext: &cri.LinuxSandboxSecurityContext{
				NamespaceOptions: &cri.NamespaceOption{Network: cri.NamespaceMode_NODE},
			},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := c.rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: config})
	if err != nil {
		t.Fatalf("run pod %s/%s: %v\n%s", namespace, name, err, c.log())
	}
	p := &pod{c: c, id: resp.GetPodSandboxId(), config: config}
	t.Cleanup(func() { p.remove(t) })
	return p
}

// remove stops and removes the pod with its containers; a pod that is
// already gone is fine.
func (p *pod) remove(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := p.c.rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil && !isNotFound(err) {
		t.Errorf("stop pod %s: %v", p.id, err)
	}
	if _, err := p.c.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil && !isNotFound(err) {
		t.Errorf("remove pod %s: %v", p.id, err)
	}
}

func isNotFound(err error) bool { return err != nil && strings.Contains(err.Error(), "not found") }

// create creates a container in the pod running command.
func (p *pod) create(t testing.TB, name string, command ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := p.c.rt.CreateContainer(ctx, &cri.CreateContainerRequest{
		PodSandboxId: p.id,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: name},
			Image:    &cri.ImageSpec{Image: testImage},
			Command:  command,
			LogPath:  name + ".log",
		},
		SandboxConfig: p.config,
	})
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	return resp.GetContainerId()
}

// start starts a created container and returns the runtime's error.
func (p *pod) start(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := p.c.rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: id})
	return err
}

// run creates and starts a container, failing the test if it cannot start.
func (p *pod) run(t testing.TB, name string, command ...string) string {
	t.Helper()
	id := p.create(t, name, command...)
	if err := p.start(id); err != nil {
		t.Fatalf("start container %s: %v", name, err)
	}
	return id
}

// removeContainer stops and removes one container.
func (p *pod) removeContainer(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := p.c.rt.StopContainer(ctx, &cri.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
		t.Fatalf("stop container %s: %v", id, err)
	}
	if _, err := p.c.rt.RemoveContainer(ctx, &cri.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("remove container %s: %v", id, err)
	}
}

// wait waits for a container to exit and returns its status.
func (p *pod) wait(t testing.TB, id string) *cri.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := p.status(t, id)
		if st.GetState() == cri.ContainerState_CONTAINER_EXITED {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %v after 60s", id, st.GetState())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pod) status(t testing.TB, id string) *cri.ContainerStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := p.c.rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("container status %s: %v", id, err)
	}
	return resp.GetStatus()
}

// output returns what the container wrote, without the CRI log prefixes.
func (p *pod) output(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(p.config.LogDirectory, name+".log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		// "<time> <stream> <P|F> <text>"
		if f := strings.SplitN(line, " ", 4); len(f) == 4 {
			out.WriteString(f[3])
			if f[2] == "F" {
				out.WriteByte('\n')
			}
		}
	}
	return out.String()
}

// exec runs a command in a running container.
func (p *pod) exec(t testing.TB, id string, cmd ...string) (int32, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := p.c.rt.ExecSync(ctx, &cri.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("exec %q in %s: %v", cmd, id, err)
	}
	return resp.GetExitCode(), string(bytes.TrimSpace(append(resp.GetStdout(), resp.GetStderr()...)))
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// Package cri lists a node's running containers through the Kubernetes CRI
// API, as the engine's registrations, so the engine can adopt containers
// that started before it or on a node without NRI. It only reads; the
// connection lives for one List call.
//
// Only the holdfast command imports it; registrars do not.
package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
)

// Source names the registrations made from a CRI listing.
const Source = "cri"

// DefaultTimeout bounds one List when the context has no deadline.
const DefaultTimeout = 10 * time.Second

// Lister lists running containers from a CRI runtime.
type Lister struct {
	// Endpoint is the runtime's CRI socket, "unix:///run/containerd/containerd.sock"
	// (a bare absolute path is taken as a unix socket).
	Endpoint string
	Cgroups  cgroup.Mount
	// Known, if set, names containers the caller has already: List gives
	// them by ID alone, without a ContainerStatus call each.
	Known func(id string) bool
	Log   *slog.Logger // nil discards
}

// List returns every running container with its pod identity, cgroup and
// process. Containers that cannot be described (they exited meanwhile) are
// logged and listed by id alone; a runtime that does not answer is an
// error.
func (l *Lister) List(ctx context.Context) (out []api.Container, err error) {
	err = l.call(ctx, func(ctx context.Context, rt runtime.RuntimeServiceClient) error {
		out, err = l.list(ctx, rt)
		return err
	})
	return out, err
}

func (l *Lister) list(ctx context.Context, rt runtime.RuntimeServiceClient) ([]api.Container, error) {
	pods, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("list pod sandboxes from %s: %w", l.Endpoint, err)
	}
	podByID := make(map[string]*runtime.PodSandbox, len(pods.GetItems()))
	for _, p := range pods.GetItems() {
		podByID[p.GetId()] = p
	}
	ctrs, err := rt.ListContainers(ctx, &runtime.ListContainersRequest{
		Filter: &runtime.ContainerFilter{State: &runtime.ContainerStateValue{State: runtime.ContainerState_CONTAINER_RUNNING}},
	})
	if err != nil {
		return nil, fmt.Errorf("list containers from %s: %w", l.Endpoint, err)
	}

	out := make([]api.Container, 0, len(ctrs.GetContainers()))
	for _, c := range ctrs.GetContainers() {
		if l.Known != nil && l.Known(c.GetId()) {
			out = append(out, api.Container{ID: c.GetId(), Source: Source})
			continue
		}
		reg, err := l.describe(ctx, rt, podByID[c.GetPodSandboxId()], c)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("list containers from %s: %w", l.Endpoint, err)
			}
			// Listed by id alone: it runs, so a reconcile must not drop
			// its registration, but it cannot be adopted now.
			l.log().Warn("not adopting container", "id", c.GetId(), "err", err)
			out = append(out, api.Container{ID: c.GetId(), Source: Source})
			continue
		}
		out = append(out, reg)
	}
	return out, nil
}

func (l *Lister) log() *slog.Logger {
	if l.Log != nil {
		return l.Log
	}
	return slog.New(slog.DiscardHandler)
}

// verboseInfo is the part of ContainerStatus's verbose "info" that
// containerd and CRI-O both fill in.
type verboseInfo struct {
	Pid         int `json:"pid"`
	RuntimeSpec struct {
		Linux struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
}

func (l *Lister) describe(ctx context.Context, rt runtime.RuntimeServiceClient, pod *runtime.PodSandbox, c *runtime.Container) (api.Container, error) {
	if pod == nil {
		return api.Container{}, errors.New("its pod sandbox is not listed")
	}
	st, err := rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: c.GetId(), Verbose: true})
	if err != nil {
		return api.Container{}, fmt.Errorf("container status: %w", err)
	}
	var info verboseInfo
	if raw := st.GetInfo()["info"]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &info); err != nil {
			return api.Container{}, fmt.Errorf("parse verbose container status: %w", err)
		}
	}
	path, id, err := l.Cgroups.Find(info.Pid, info.RuntimeSpec.Linux.CgroupsPath)
	if err != nil {
		return api.Container{}, fmt.Errorf("find cgroup: %w", err)
	}
	image := st.GetStatus().GetImage().GetImage()
	if image == "" {
		image = c.GetImage().GetImage()
	}
	name := c.GetMetadata().GetName()
	if name == "" {
		name = st.GetStatus().GetMetadata().GetName()
	}
	return api.Container{
		ID:         c.GetId(),
		Pid:        info.Pid,
		CgroupID:   id,
		CgroupPath: path,
		Namespace:  pod.GetMetadata().GetNamespace(),
		Pod:        pod.GetMetadata().GetName(),
		PodUID:     pod.GetMetadata().GetUid(),
		Labels:     maps.Clone(pod.GetLabels()),
		Name:       name,
		Image:      image,
		Source:     Source,
	}, nil
}

// grpcTarget turns a CRI endpoint into a gRPC target; only unix sockets
// are accepted, the CRI is local.
func grpcTarget(endpoint string) (string, error) {
	switch {
	case strings.HasPrefix(endpoint, "unix:///"):
		return endpoint, nil
	case strings.HasPrefix(endpoint, "/"):
		return "unix://" + endpoint, nil
	}
	return "", fmt.Errorf("cri endpoint %q: want unix:///path/to/socket", endpoint)
}

// call runs f over a connection that lives for this one call, within
// DefaultTimeout when ctx has no deadline.
func (l *Lister) call(ctx context.Context, f func(context.Context, runtime.RuntimeServiceClient) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	target, err := grpcTarget(l.Endpoint)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect to cri runtime at %s: %w", l.Endpoint, err)
	}
	defer conn.Close()
	return f(ctx, runtime.NewRuntimeServiceClient(conn))
}

// Pod asks the runtime for a pod sandbox's identity and labels
// (PodSandboxStatus), for a container whose sandbox the engine never saw.
func (l *Lister) Pod(ctx context.Context, sandboxID string) (*api.Pod, error) {
	var resp *runtime.PodSandboxStatusResponse
	err := l.call(ctx, func(ctx context.Context, rt runtime.RuntimeServiceClient) (err error) {
		resp, err = rt.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: sandboxID})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pod sandbox status of %s from %s: %w", sandboxID, l.Endpoint, err)
	}
	st := resp.GetStatus()
	return &api.Pod{
		ID:        sandboxID,
		Namespace: st.GetMetadata().GetNamespace(),
		Name:      st.GetMetadata().GetName(),
		UID:       st.GetMetadata().GetUid(),
		Labels:    maps.Clone(st.GetLabels()),
	}, nil
}

// DefaultEndpoints are the CRI sockets of containerd and CRI-O at their
// default paths, in the order DetectEndpoint tries them.
var DefaultEndpoints = []string{
	"/run/containerd/containerd.sock",
	"/run/crio/crio.sock",
	"/var/run/crio/crio.sock",
}

// ErrNoEndpoint: none of the default CRI sockets exists.
var ErrNoEndpoint = errors.New("no CRI socket found")

// DetectEndpoint returns the first of candidates that is a Unix socket.
func DetectEndpoint(candidates []string) (string, error) {
	for _, p := range candidates {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Type() == os.ModeSocket {
			return "unix://" + p, nil
		}
	}
	return "", fmt.Errorf("%w among %s", ErrNoEndpoint, strings.Join(candidates, ", "))
}

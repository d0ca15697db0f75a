package daemon

import (
	"context"
	"fmt"
	"maps"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// containerNameLabel is kubelet's container-name label; CRI-O puts it, as
// "POD", among a sandbox's labels, and it is no label of the pod.
const containerNameLabel = "io.kubernetes.container.name"

// resolvePod gives an application container that names its pod sandbox
// the pod's identity and labels: from the sandbox's registration (CRI-O's
// sandbox annotations carry the pod labels), else from the CRI runtime,
// which answers for pods that started before the engine or whose sandbox
// annotations carry no labels (containerd).
func (e *Engine) resolvePod(ctx context.Context, c *api.Container) error {
	if c.Sandbox || c.SandboxID == "" {
		return nil
	}
	e.mu.Lock()
	sb, ok := e.reg.Get(c.SandboxID)
	e.mu.Unlock()
	if ok && sb.Sandbox && sb.Labels != nil {
		return takePod(c, api.Pod{ID: sb.ID, Namespace: sb.Namespace, Name: sb.Pod, UID: sb.PodUID, Labels: sb.Labels})
	}
	if e.opts.PodSandbox == nil {
		if ok && sb.Sandbox {
			return takePod(c, api.Pod{ID: sb.ID, Namespace: sb.Namespace, Name: sb.Pod, UID: sb.PodUID})
		}
		return fmt.Errorf("pod sandbox %s is not registered and no CRI endpoint is configured to ask for its labels", c.SandboxID)
	}
	pod, err := e.opts.PodSandbox(ctx, c.SandboxID)
	if err != nil {
		return fmt.Errorf("labels of pod sandbox %s: %w", c.SandboxID, err)
	}
	return takePod(c, *pod)
}

// takePod fills c's pod identity from pod; a registrar's differing claim
// is refused rather than overridden, since one of them is wrong.
func takePod(c *api.Container, pod api.Pod) error {
	for _, f := range []struct {
		name        string
		have        *string
		fromSandbox string
	}{{"namespace", &c.Namespace, pod.Namespace}, {"pod", &c.Pod, pod.Name}, {"pod uid", &c.PodUID, pod.UID}} {
		switch {
		case *f.have == "":
			*f.have = f.fromSandbox
		case f.fromSandbox != "" && *f.have != f.fromSandbox:
			return fmt.Errorf("container says %s %q, its pod sandbox %s says %q", f.name, *f.have, pod.ID, f.fromSandbox)
		}
	}
	labels := maps.Clone(pod.Labels)
	delete(labels, containerNameLabel)
	if len(labels) == 0 {
		labels = nil
	}
	c.Labels = labels
	return nil
}

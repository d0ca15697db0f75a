package ocihook

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/jsonscan"
)

// Source names the OCI hook as a registrar to the engine.
const Source = "oci-hook"

// Annotations CRI-O sets on a container's OCI spec.
const (
	CRIONamespace     = "io.kubernetes.pod.namespace"
	CRIOPodName       = "io.kubernetes.pod.name"
	CRIOPodUID        = "io.kubernetes.pod.uid"
	CRIOContainerName = "io.kubernetes.container.name"
	CRIOLabels        = "io.kubernetes.cri-o.Labels"
	CRIOImageName     = "io.kubernetes.cri-o.ImageName"
)

// Annotations containerd's CRI plugin sets on a container's OCI spec.
const (
	CRINamespace     = "io.kubernetes.cri.sandbox-namespace"
	CRIPodName       = "io.kubernetes.cri.sandbox-name"
	CRIPodUID        = "io.kubernetes.cri.sandbox-uid"
	CRIContainerName = "io.kubernetes.cri.container-name"
	CRIImageName     = "io.kubernetes.cri.image-name"
)

// Annotations that tell a pod's sandbox (infra) container from its
// application containers and name the sandbox: CRI-O's, then containerd's.
const (
	CRIOContainerType = "io.kubernetes.cri-o.ContainerType"
	CRIOSandboxID     = "io.kubernetes.cri-o.SandboxID"
	CRIContainerType  = "io.kubernetes.cri.container-type"
	CRISandboxID      = "io.kubernetes.cri.sandbox-id"

	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

// isIdentityKey says whether an annotation is one Identity reads: the
// state's and config.json's decoders keep these alone
// (TestIdentityReadsOnlyIdentityKeys).
func isIdentityKey(key []byte) bool {
	switch string(key) {
	case CRIONamespace, CRINamespace, CRIOPodName, CRIPodName, CRIOPodUID, CRIPodUID,
		CRIOContainerName, CRIContainerName, CRIOImageName, CRIImageName, CRIOLabels,
		CRIOContainerType, CRIContainerType, CRIOSandboxID, CRISandboxID:
		return true
	}
	return false
}

// maxLabels bounds the labels annotation, which Kubernetes caps far lower.
const maxLabels = 1024

// Identity builds the container the engine registers from the runtime's id
// and annotations. Each set is searched in order (the state's before
// config.json's), CRI-O's keys before containerd's. Without a container
// name annotation the id names the container.
//
// A pod's labels are on its sandbox: a sandbox container is registered as
// one, with CRI-O's labels annotation as the pod's labels; an application
// container names its sandbox, and the engine gives it the pod's labels
// (CRI-O's labels annotation on it holds only kubelet's container labels).
// A container with neither kind (plain podman or runc) takes the labels
// annotation as its pod labels.
func Identity(id string, annotationSets ...map[string]string) (api.Container, error) {
	lookup := func(keys ...string) string {
		for _, set := range annotationSets {
			for _, k := range keys {
				if v, ok := set[k]; ok && v != "" {
					return v
				}
			}
		}
		return ""
	}
	c := api.Container{
		ID:        id,
		Namespace: lookup(CRIONamespace, CRINamespace),
		Pod:       lookup(CRIOPodName, CRIPodName),
		PodUID:    lookup(CRIOPodUID, CRIPodUID),
		Name:      lookup(CRIOContainerName, CRIContainerName),
		Image:     lookup(CRIOImageName, CRIImageName),
		Source:    Source,
	}
	if c.Name == "" {
		c.Name = id
	}
	switch kind := lookup(CRIOContainerType, CRIContainerType); kind {
	case ContainerTypeSandbox:
		c.Sandbox = true
	case ContainerTypeContainer:
		c.SandboxID = lookup(CRIOSandboxID, CRISandboxID)
		if c.SandboxID == "" {
			return c, fmt.Errorf("identity of %s: an application container without a %s or %s annotation", id, CRIOSandboxID, CRISandboxID)
		}
		return c, nil
	case "":
	default:
		return c, fmt.Errorf("identity of %s: unknown container type %q", id, kind)
	}
	if raw := lookup(CRIOLabels); raw != "" {
		labels, err := ParseLabels(raw)
		if err != nil {
			return c, fmt.Errorf("identity of %s: annotation %s: %w", id, CRIOLabels, err)
		}
		c.Labels = labels
	}
	return c, nil
}

// ParseLabels decodes CRI-O's labels annotation: a JSON object of strings.
// A malformed value is an error rather than "no labels", because policies
// select by labels and an unlabelled container would silently escape them.
// It reads as json.Unmarshal would (FuzzParseLabels), without reflection.
func ParseLabels(raw string) (map[string]string, error) {
	var labels map[string]string
	s := jsonscan.New([]byte(raw))
	err := s.StringMap(&labels)
	if err == nil {
		err = s.End()
	}
	if err != nil {
		return nil, fmt.Errorf("labels are not a JSON object of strings: %w", err)
	}
	if len(labels) > maxLabels {
		return nil, fmt.Errorf("%d labels, more than %d", len(labels), maxLabels)
	}
	for k := range labels {
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("label with empty key")
		}
	}
	if len(labels) == 0 {
		return nil, nil
	}
	return labels, nil
}

// Registration is the container a create-stage run registers: its identity
// and the process its exec rules resolve through. The create stages run
// before pivot_root, so the rules resolve in the rootfs as the container's
// process will see it. At createContainer the hook runs inside the
// container, whose state pid (1 in its pid namespace) names another
// process outside: the hook itself is the witness there.
func Registration(stage Stage, st *specs.State, cfg *BundleConfig) (api.Container, error) {
	c, err := Identity(st.ID, st.Annotations, cfg.Annotations)
	if err != nil {
		return c, err
	}
	c.Pid, c.Rootfs, c.Entrypoint = st.Pid, cfg.Rootfs(st.Bundle), cfg.Args()
	if stage == StageCreateContainer {
		c.PeerInContainer, c.Pid = true, 0
	}
	return c, nil
}

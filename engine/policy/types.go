package policy

import (
	"bytes"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The one document type this package reads.
const (
	APIVersion = "holdfast.dev/v1alpha1"
	Kind       = "WorkloadPolicy"
)

// document is one YAML document of a policy file, as written.
type document struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       *Spec    `json:"spec"`
}

// Metadata names a policy. Labels and annotations are optional and only
// carried along, so tools like kustomize can add them.
type Metadata struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Spec says which containers a policy applies to and what it denies them.
type Spec struct {
	// Mode is ModeEnforce (the default when empty) or ModeAudit: matches
	// are only recorded (verdict wouldDeny) and the operations go ahead.
	Mode     string   `json:"mode,omitempty"`
	Selector Selector `json:"selector,omitzero"`
	Exec     Exec     `json:"exec,omitzero"`
	Network  Network  `json:"network,omitzero"`
	Events   Events   `json:"events,omitzero"`
}

// Events turns on informational events for the selected containers.
type Events struct {
	// Exec: a process_exec and a process_exit event for every process.
	Exec bool `json:"exec,omitempty"`
}

// From scopes a deny rule to part of a container's process tree.
type From struct {
	// Ancestors are absolute paths of binaries: the rule applies only to
	// processes descended from a process running one of them in the same
	// container (a process that replaced itself by exec counts its
	// earlier images as ancestors).
	Ancestors []string `json:"ancestors"`
}

// ExecDeny is one exec.deny entry: a path, written as a plain string, or
// a mapping {path, from} for a rule scoped to ancestors.
type ExecDeny struct {
	Path string `json:"path"`
	From *From  `json:"from,omitempty"`
}

// execDenyFields is ExecDeny's mapping form, decoded without its
// UnmarshalJSON.
type execDenyFields ExecDeny

// UnmarshalJSON accepts a string or a mapping.
func (d *ExecDeny) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		*d = ExecDeny{}
		if err := json.Unmarshal(data, &d.Path); err != nil {
			return fmt.Errorf("decode exec.deny entry: %w", err)
		}
		return nil
	}
	var f execDenyFields
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("decode exec.deny entry: %w", err)
	}
	*d = ExecDeny(f)
	return nil
}

// MarshalJSON writes an unscoped entry as the plain string it can be.
func (d ExecDeny) MarshalJSON() ([]byte, error) {
	if d.From == nil {
		return json.Marshal(d.Path)
	}
	return json.Marshal(execDenyFields(d))
}

// Modes of a policy (spec.mode); the same words as the event schema's.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"
)

// Selector picks containers. Every field given must match; an absent field
// matches anything, so an empty selector selects every container.
type Selector struct {
	Namespaces []string `json:"namespaces,omitempty"`
	// PodLabels has Kubernetes LabelSelector semantics.
	PodLabels  *metav1.LabelSelector `json:"podLabels,omitempty"`
	Containers []string              `json:"containers,omitempty"`
	// Images are path.Match globs over the image reference as the runtime
	// reports it, e.g. "registry.example/library/nginx:*".
	Images []string `json:"images,omitempty"`
}

// Exec lists executables the selected containers may not run, and
// optionally the only ones they may run.
type Exec struct {
	// Deny holds absolute paths: a path denies exactly that file, a path
	// with a trailing slash denies everything below that directory. An
	// entry may be scoped to ancestors ({path, from}).
	Deny []ExecDeny `json:"deny,omitempty"`
	// Allow, written like Deny, makes an allow list: when any policy
	// selecting a container has one, the container may run only files on
	// the union of those lists, minus what any deny rule denies.
	Allow []string `json:"allow,omitempty"`
}

// Network holds the network rules.
type Network struct {
	Connect Connect `json:"connect,omitzero"`
	Sockets Sockets `json:"sockets,omitzero"`
	Bind    Bind    `json:"bind,omitzero"`
}

// Sockets lists kinds of sockets the selected containers may not create
// (socket() fails with EPERM). The names are those of SocketKinds.
type Sockets struct {
	Deny []string `json:"deny,omitempty"`
}

// Bind lists ports the selected containers may not bind to.
type Bind struct {
	Deny []BindPorts `json:"deny,omitempty"`
}

// BindPorts is one denied set of local ports.
type BindPorts struct {
	// Ports are "N" or "N-M"; none means every port, including a bind to
	// port 0 (an ephemeral port).
	Ports []PortRange `json:"ports,omitempty"`
	// Protocol is "tcp", "udp" or "any" (the default).
	Protocol string `json:"protocol,omitempty"`
}

// Connect lists destinations the selected containers may not connect or
// send to.
type Connect struct {
	Deny []Destination `json:"deny,omitempty"`
}

// Destination is one denied destination.
type Destination struct {
	// CIDR is an IPv4 or IPv6 prefix; a bare address means that one host.
	CIDR string `json:"cidr"`
	// Ports are "N" or "N-M"; none means every port.
	Ports []PortRange `json:"ports,omitempty"`
	// Protocol is "tcp", "udp" or "any" (the default).
	Protocol string `json:"protocol,omitempty"`
	// From scopes the rule to descendants of ancestor binaries.
	From *From `json:"from,omitempty"`
}

// PortRange is "N" or "N-M". YAML authors often leave single ports
// unquoted, so a number is accepted as well as a string.
type PortRange string

// UnmarshalJSON accepts a JSON string or number.
func (p *PortRange) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("decode port range: %w", err)
		}
		*p = PortRange(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("decode port range: %w", err)
	}
	*p = PortRange(n.String())
	return nil
}

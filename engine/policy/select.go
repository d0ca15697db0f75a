package policy

import (
	"fmt"
	"path"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// Identity is what the engine knows about a container when it decides which
// policies apply. Fields a registrar does not know stay empty.
type Identity struct {
	Namespace string
	Pod       string
	Labels    map[string]string // pod labels
	Container string            // container name within its pod
	Image     string            // image reference as the runtime reports it
}

// Selects reports whether the policy applies to the container. It formats
// no reason: a restart asks it for every container and policy.
func (p *Policy) Selects(id Identity) bool { return p.failingField(id) == fieldNone }

// Mismatch says why the policy does not apply to the container, naming the
// first selector field that fails; it is empty when the policy applies.
func (p *Policy) Mismatch(id Identity) string {
	s := &p.Spec.Selector
	switch p.failingField(id) {
	case fieldNamespace:
		return fmt.Sprintf("namespace %q is not one of %q", id.Namespace, s.Namespaces)
	case fieldPodLabels:
		return fmt.Sprintf("pod labels {%s} do not match %q", labels.Set(id.Labels), p.pods)
	case fieldContainer:
		return fmt.Sprintf("container %q is not one of %q", id.Container, s.Containers)
	case fieldImage:
		return fmt.Sprintf("image %q matches none of %q", id.Image, s.Images)
	}
	return ""
}

// selectorField names a field of a policy's selector.
type selectorField int

const (
	fieldNone selectorField = iota
	fieldNamespace
	fieldPodLabels
	fieldContainer
	fieldImage
)

// failingField is the first selector field the container fails, or fieldNone.
func (p *Policy) failingField(id Identity) selectorField {
	s := &p.Spec.Selector
	if s.Namespaces != nil && !slices.Contains(s.Namespaces, id.Namespace) {
		return fieldNamespace
	}
	if !p.pods.Matches(labels.Set(id.Labels)) {
		return fieldPodLabels
	}
	if s.Containers != nil && !slices.Contains(s.Containers, id.Container) {
		return fieldContainer
	}
	if s.Images != nil && !slices.ContainsFunc(s.Images, func(glob string) bool {
		ok, _ := path.Match(glob, id.Image) // patterns were validated when parsed
		return ok
	}) {
		return fieldImage
	}
	return fieldNone
}

package policy

import (
	"fmt"
	"path"
	"strings"
)

// mergedUsr are directories that are symlinks into /usr on merged-/usr
// distributions (Debian 12, Ubuntu, Fedora, Arch), and where they point.
var mergedUsr = map[string]string{"/bin": "/usr/bin", "/sbin": "/usr/sbin", "/lib": "/usr/lib", "/lib64": "/usr/lib64", "/lib32": "/usr/lib32"}

// multiCallBinaries run many commands from one file.
var multiCallBinaries = map[string]bool{"busybox": true, "toybox": true}

// Warnings are what can be said about p's exec rules without a container:
// rules that depend on the image's layout. They do not make p invalid.
// `holdfast containers explain` says what each rule means in one container.
func (p *Policy) Warnings() []string {
	var out []string
	for i, d := range p.Spec.Exec.Deny {
		r := d.Path
		field := fmt.Sprintf("%s: spec.exec.deny[%d] %s", p.Name, i, r)
		top := "/" + strings.SplitN(strings.TrimPrefix(r, "/"), "/", 2)[0]
		if usr, ok := mergedUsr[top]; ok {
			if strings.HasSuffix(r, "/") {
				out = append(out, fmt.Sprintf("%s: on merged-/usr images %s is a symlink to %s and directory prefix rules match the resolved path, so this covers nothing there; add %s",
					field, top, usr, usr+strings.TrimPrefix(r, top)))
			} else {
				out = append(out, fmt.Sprintf("%s: on merged-/usr images this path is %s: the file there at registration is denied by identity, but a file put there later is matched only by a rule naming %s",
					field, usr+strings.TrimPrefix(r, top), usr+strings.TrimPrefix(r, top)))
			}
		}
		if multiCallBinaries[path.Base(r)] {
			out = append(out, fmt.Sprintf("%s: a multi-call binary: denying it denies every command it provides, and one of its applets cannot be denied alone", field))
		}
		if d.From != nil {
			out = append(out, ancestorWarnings(fmt.Sprintf("%s: spec.exec.deny[%d].from", p.Name, i), d.From)...)
		}
	}
	for i, d := range p.Spec.Network.Connect.Deny {
		if d.From != nil {
			out = append(out, ancestorWarnings(fmt.Sprintf("%s: spec.network.connect.deny[%d].from", p.Name, i), d.From)...)
		}
	}
	return out
}

// ancestorWarnings: ancestors are matched by the path the kernel resolves
// for the binary a process runs, with no identity to fall back on.
func ancestorWarnings(field string, f *From) []string {
	var out []string
	for i, a := range f.Ancestors {
		top := "/" + strings.SplitN(strings.TrimPrefix(a, "/"), "/", 2)[0]
		if usr, ok := mergedUsr[top]; ok {
			out = append(out, fmt.Sprintf("%s.ancestors[%d] %s: on merged-/usr images the binary runs as %s, and ancestors are matched by that path only; name it",
				field, i, a, usr+strings.TrimPrefix(a, top)))
		}
		if multiCallBinaries[path.Base(a)] {
			out = append(out, fmt.Sprintf("%s.ancestors[%d] %s: a multi-call binary: every command it provides counts as this ancestor", field, i, a))
		}
	}
	return out
}

package policy

import (
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	ps, err := Parse("w.yaml", []byte(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: w}
spec:
  exec:
    deny: [/bin/sh, /sbin/, /usr/bin/busybox, /usr/bin/wget, /tmp/]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(ps[0].Warnings(), "\n")
	for _, want := range []string{
		"w: spec.exec.deny[0] /bin/sh: on merged-/usr images this path is /usr/bin/sh: the file there at registration is denied by identity",
		"w: spec.exec.deny[1] /sbin/: on merged-/usr images /sbin is a symlink to /usr/sbin and directory prefix rules match the resolved path, so this covers nothing there; add /usr/sbin/",
		"w: spec.exec.deny[2] /usr/bin/busybox: a multi-call binary",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	if n := len(ps[0].Warnings()); n != 3 {
		t.Errorf("%d warnings, want 3 (none for /usr/bin/wget and /tmp/):\n%s", n, got)
	}
}

package redact

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
)

func writeDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const secrets = `apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: lockdown}
spec:
  exec: {deny: [/usr/bin/wget]}
---
apiVersion: holdfast.dev/v1alpha1
kind: RedactionFilter
metadata: {name: secrets}
spec:
  args: ['--password[= ](\S+)', 'token:(\w+)']
  argFlags: [--password, -p, --api-key]
  envKeys: ['*_TOKEN', PGPASSWORD]
---
apiVersion: holdfast.dev/v1alpha1
kind: RedactionFilter
metadata: {name: mysql-only}
spec:
  argFlags: [-u]
  binaries: [/usr/bin/mysql]
`

// loadSet loads the filters of one policy file.
func loadSet(t testing.TB, data string) *Set {
	t.Helper()
	set, err := LoadDir(writeDir(t, map[string]string{"p.yaml": data}))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestApply(t *testing.T) {
	set := loadSet(t, secrets)
	for _, tc := range []struct {
		name     string
		binary   string
		args     []string
		env      []string
		wantArgs []string
		wantEnv  []string
		wantBy   []string
	}{
		{"flag and next element", "/usr/bin/curl", []string{"curl", "--password", "hunter2", "x"},
			nil, []string{"curl", "--password", Mask, "x"}, nil, []string{"secrets"}},
		{"flag joined with =", "/usr/bin/curl", []string{"curl", "--api-key=abc", "--password=hunter2"},
			nil, []string{"curl", "--api-key=" + Mask, "--password=" + Mask}, nil, []string{"secrets"}},
		{"short flag joined", "/usr/bin/mysql", []string{"mysql", "-phunter2", "-uroot"},
			nil, []string{"mysql", "-p" + Mask, "-u" + Mask}, nil, []string{"mysql-only", "secrets"}},
		{"short flag separate", "/usr/bin/mysql", []string{"mysql", "-p", "hunter2"},
			nil, []string{"mysql", "-p", Mask}, nil, []string{"secrets"}},
		{"scope: -u only for mysql", "/usr/bin/psql", []string{"psql", "-uroot"},
			nil, []string{"psql", "-uroot"}, nil, nil},
		{"regex groups inside one element", "/bin/sh", []string{"sh", "-c", "mysql --password s3cret && echo token:abc token:def"},
			nil, []string{"sh", "-c", "mysql --password ***** && echo token:***** token:*****"}, nil, []string{"secrets"}},
		{"a short flag takes the rest of its element", "/bin/x", []string{"x", "-print"},
			nil, []string{"x", "-p" + Mask}, nil, []string{"secrets"}},
		{"env keys by glob", "/bin/x", []string{"x"},
			[]string{"GH_TOKEN=abc", "PATH=/bin", "PGPASSWORD=pw", "TOKEN=keep"}, []string{"x"},
			[]string{"GH_TOKEN=" + Mask, "PATH=/bin", "PGPASSWORD=" + Mask, "TOKEN=keep"}, []string{"secrets"}},
		{"nothing to redact", "/bin/ls", []string{"ls", "-l"}, []string{"HOME=/root"},
			[]string{"ls", "-l"}, []string{"HOME=/root"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := slices.Clone(tc.args)
			ev := &api.Event{Process: &api.Process{Binary: tc.binary, Args: tc.args, Env: tc.env}}
			set.Apply(ev)
			if !slices.Equal(ev.Process.Args, tc.wantArgs) || !slices.Equal(ev.Process.Env, tc.wantEnv) || !slices.Equal(ev.RedactedBy, tc.wantBy) {
				t.Errorf("got args %q env %q by %q, want %q %q %q", ev.Process.Args, ev.Process.Env, ev.RedactedBy, tc.wantArgs, tc.wantEnv, tc.wantBy)
			}
			if !slices.Equal(tc.args, orig) {
				t.Errorf("Apply wrote into the caller's argv slice: %q", tc.args)
			}
		})
	}
}

func TestApplyAncestors(t *testing.T) {
	set, err := LoadDir(writeDir(t, map[string]string{"p.yaml": secrets}))
	if err != nil {
		t.Fatal(err)
	}
	ev := &api.Event{
		Process:   &api.Process{Binary: "/usr/bin/id", Args: []string{"id"}},
		Ancestors: []api.Process{{Binary: "/bin/sh", Args: []string{"sh", "-c", "x --password=pw"}}, {Binary: "/usr/bin/mysql", Args: []string{"mysql", "-uadmin"}}},
	}
	set.Apply(ev)
	if got := ev.Ancestors[0].Args[2]; got != "x --password="+Mask {
		t.Errorf("parent argv not redacted: %q", got)
	}
	if got := ev.Ancestors[1].Args[1]; got != "-u"+Mask {
		t.Errorf("grandparent argv not redacted by its scoped filter: %q", got)
	}
	if !slices.Equal(ev.RedactedBy, []string{"mysql-only", "secrets"}) {
		t.Errorf("redactedBy %q", ev.RedactedBy)
	}
}

func TestInvalidFilters(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"bad regex and no group", `kind: RedactionFilter
apiVersion: holdfast.dev/v1alpha1
metadata: {name: a}
spec: {args: ['(unclosed', 'nogroup']}`, []string{"spec.args[0]: not a regular expression", `spec.args[1]: "nogroup" has no capture group`}},
		{"bad flag, glob and binary", `kind: RedactionFilter
apiVersion: holdfast.dev/v1alpha1
metadata: {name: a}
spec: {argFlags: [password], envKeys: ['[x'], binaries: [mysql]}`, []string{`spec.argFlags[0]: "password" is not a flag`, `spec.envKeys[0]`, `spec.binaries[0]: "mysql" is not an absolute path`}},
		{"unknown field", `kind: RedactionFilter
apiVersion: holdfast.dev/v1alpha1
metadata: {name: a}
spec: {argz: [x]}`, []string{`unknown field "argz"`}},
		{"wrong type", `kind: RedactionFilter
apiVersion: holdfast.dev/v1alpha1
metadata: {name: a}
spec: {args: x}`, []string{"spec.args: must be []string"}},
		{"empty and nameless", `kind: RedactionFilter
apiVersion: holdfast.dev/v1alpha1
spec: {binaries: [/bin/sh]}`, []string{"metadata.name", "spec: redacts nothing"}},
		{"duplicate names", `kind: RedactionFilter
apiVersion: holdfast.dev/v1alpha1
metadata: {name: a}
spec: {argFlags: [-p]}
---
kind: RedactionFilter
apiVersion: holdfast.dev/v1alpha1
metadata: {name: a}
spec: {argFlags: [-p]}`, []string{`redaction filter "a" is already defined`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"f.yaml": tc.yaml})
			_, err := LoadDir(dir)
			if err == nil {
				t.Fatal("invalid filter accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), filepath.Join(dir, "f.yaml")) {
					t.Errorf("error %q does not name the file and %q", err, w)
				}
			}
		})
	}
}

func TestNoFiltersIsEmpty(t *testing.T) {
	set, err := LoadDir(writeDir(t, map[string]string{"p.yaml": strings.SplitN(secrets, "---", 2)[0]}))
	if err != nil {
		t.Fatal(err)
	}
	ev := &api.Event{Process: &api.Process{Args: []string{"x", "--password", "pw"}}}
	set.Apply(ev)
	if len(set.Filters()) != 0 || ev.Process.Args[2] != "pw" || ev.RedactedBy != nil {
		t.Errorf("a dir without filters changed an event: %+v", ev.Process)
	}
}

func TestFailClosedMasksEverything(t *testing.T) {
	ev := &api.Event{Process: &api.Process{Args: []string{"mysql", "-uroot", "secret"}, Env: []string{"A=b"}},
		Ancestors: []api.Process{{Args: []string{"sh", "-c", "mysql secret"}}}}
	FailClosed().Apply(ev)
	if !slices.Equal(ev.Process.Args, []string{"mysql", Mask, Mask}) || ev.Process.Env[0] != "A="+Mask ||
		ev.Ancestors[0].Args[2] != Mask || !slices.Equal(ev.RedactedBy, []string{FailClosedName}) {
		t.Errorf("fail-closed set left %+v %+v by %v", ev.Process, ev.Ancestors, ev.RedactedBy)
	}
}

// BenchmarkApply redacts a three-process chain with two filters.
func BenchmarkApply(b *testing.B) {
	set, err := LoadDir(writeDir(b, map[string]string{"p.yaml": secrets}))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ev := &api.Event{Process: &api.Process{Binary: "/usr/bin/mysql", Args: []string{"mysql", "-uroot", "-phunter2", "--host", "db"}},
			Ancestors: []api.Process{{Binary: "/bin/sh", Args: []string{"sh", "-c", "mysql -uroot -phunter2 --host db"}}, {Binary: "/usr/sbin/nginx", Args: []string{"nginx", "-g", "daemon off;"}}}}
		set.Apply(ev)
	}
}

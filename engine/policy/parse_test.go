package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const header = "apiVersion: holdfast.dev/v1alpha1\nkind: WorkloadPolicy\n"

// doc is a policy document named name with spec given in YAML flow style.
func doc(name, spec string) string {
	return header + "metadata: {name: " + name + "}\nspec: " + spec + "\n"
}

func mustParse(t testing.TB, file, src string) []*Policy {
	t.Helper()
	ps, err := Parse(file, []byte(src))
	if err != nil {
		t.Fatalf("Parse(%s): %v", file, err)
	}
	return ps
}

func mustParseFile(t testing.TB, path string) []*Policy {
	t.Helper()
	ps, err := ParseFile(path)
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	return ps
}

func mustSet(t testing.TB, ps ...*Policy) *Set {
	t.Helper()
	s, err := NewSet(ps...)
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	return s
}

// checkErrorLines fails t unless err has exactly one line per want, in
// order, each starting with its want.
func checkErrorLines(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want:\n%s", strings.Join(want, "\n"))
	}
	got := strings.Split(err.Error(), "\n")
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(got[i], want[i])
	}
	if !ok {
		t.Errorf("error:\n%s\nwant lines starting with:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestParseExample(t *testing.T) {
	ps := mustParseFile(t, "testdata/web-lockdown.yaml")
	if len(ps) != 1 {
		t.Fatalf("got %d policies, want 1", len(ps))
	}
	p := ps[0]
	if p.Name != "web-lockdown" || p.File != "testdata/web-lockdown.yaml" || p.Document != 1 {
		t.Errorf("got name %q file %q document %d", p.Name, p.File, p.Document)
	}
	want := Spec{
		Selector: Selector{
			Namespaces: []string{"shop"},
			PodLabels: &metav1.LabelSelector{
				MatchLabels:      map[string]string{"app": "web"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front"}}},
			},
			Containers: []string{"main"},
			Images:     []string{"registry.example/library/nginx:*"},
		},
		Exec: Exec{Deny: []ExecDeny{{Path: "/bin/sh"}, {Path: "/usr/bin/wget"}, {Path: "/tmp/"}}},
		Network: Network{Connect: Connect{Deny: []Destination{
			{CIDR: "169.254.169.254/32", Protocol: "any"},
			{CIDR: "0.0.0.0/0", Ports: []PortRange{"25", "6660-6669"}, Protocol: "tcp"},
		}}},
	}
	if !reflect.DeepEqual(p.Spec, want) {
		t.Errorf("spec:\n got %+v\nwant %+v", p.Spec, want)
	}
	// 3 exec paths, 1 destination with any port, 1 with two port ranges.
	if got := p.RuleCount(); got != 6 {
		t.Errorf("RuleCount = %d, want 6", got)
	}
}

func TestValidationErrors(t *testing.T) {
	long := strings.Repeat("x", 256)
	deep := strings.Repeat("/d", 33)
	tests := []struct {
		name string
		src  string
		want []string // one per error line, each a prefix of the line
	}{
		{"missing apiVersion", "kind: WorkloadPolicy\nmetadata: {name: p}\nspec: {}\n",
			[]string{`p.yaml: apiVersion: required (want "holdfast.dev/v1alpha1")`}},
		{"wrong kind", "apiVersion: holdfast.dev/v1alpha1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}\n",
			[]string{`p.yaml: kind: "NetworkPolicy" is not supported (want "WorkloadPolicy")`}},
		{"missing name", header + "metadata: {}\nspec: {}\n",
			[]string{`p.yaml: metadata.name: required`}},
		{"name not DNS-1123", doc("Web_Lockdown", "{}"),
			[]string{`p.yaml: metadata.name: "Web_Lockdown" is not a valid name: a lowercase RFC 1123 subdomain`}},
		{"bad metadata label", header + "metadata: {name: p, labels: {\"a b\": c}}\nspec: {}\n",
			[]string{`p.yaml: metadata.labels[a b]: invalid label: key: Invalid value: "a b"`}},
		{"missing spec", header + "metadata: {name: p}\n",
			[]string{`p.yaml: spec: required`}},
		{"document not a mapping", "- a\n- b\n",
			[]string{`p.yaml: a policy document must be a mapping, got a sequence`}},
		{"duplicate YAML key", doc("p", "{}") + "spec: {}\n",
			[]string{`p.yaml: yaml: unmarshal errors:`, `  line 5: key "spec" already set in map`}},
		// The YAML parser reports an unclosed flow sequence one line early.
		{"YAML syntax", doc("p", "{exec: {deny: [/bin/sh}}"),
			[]string{`p.yaml: yaml: line 3: did not find expected ',' or ']'`}},

		{"unknown top-level field", doc("p", "{}") + "status: {}\n",
			[]string{`p.yaml: unknown field "status"`}},
		{"field with wrong case", header + "metadata: {name: p}\nSpec: {}\n",
			[]string{`p.yaml: unknown field "Spec" (did you mean "spec"?)`, `p.yaml: spec: required`}},
		{"unknown nested field", doc("p", "{exec: {deny: [/bin/sh], allowed: [/bin/true]}}"),
			[]string{`p.yaml: spec.exec: unknown field "allowed"`}},
		{"allow with wrong case", doc("p", "{exec: {Allow: [/bin/true]}}"),
			[]string{`p.yaml: spec.exec: unknown field "Allow" (did you mean "allow"?)`}},
		{"unknown field in list item", doc("p", "{network: {connect: {deny: [{cidr: 10.0.0.0/8, port: 22}]}}}"),
			[]string{`p.yaml: spec.network.connect.deny[0]: unknown field "port"`}},
		{"unknown field in label selector", doc("p", "{selector: {podLabels: {matchLabel: {app: web}}}}"),
			[]string{`p.yaml: spec.selector.podLabels: unknown field "matchLabel"`}},
		{"string where a list belongs", doc("p", "{exec: {deny: /bin/sh}}"),
			[]string{`p.yaml: spec.exec.deny: must be a sequence, got string "/bin/sh"`}},
		{"number where a string belongs", doc("p", "{exec: {deny: [/bin/sh, 42]}}"),
			[]string{`p.yaml: spec.exec.deny[1]: must be a path or a mapping {path, from}, got number 42`}},
		{"YAML boolean where a string belongs", doc("p", "{selector: {podLabels: {matchExpressions: [{key: a, operator: In, values: [yes]}]}}}"),
			[]string{`p.yaml: spec.selector.podLabels.matchExpressions[0].values[0]: must be a string, got boolean true (YAML reads yes/no/on/off/true/false as booleans; quote the value)`}},
		{"mapping where a port belongs", doc("p", "{network: {connect: {deny: [{cidr: 10.0.0.0/8, ports: [{from: 1}]}]}}}"),
			[]string{`p.yaml: spec.network.connect.deny[0].ports[0]: must be a string or a number, got a mapping`}},
		{"YAML 1.1 boolean as a name", doc("y", "{}"),
			[]string{`p.yaml: metadata.name: must be a string, got boolean true (YAML reads yes/no/on/off/true/false as booleans; quote the value)`}},
		{"mapping where a name belongs", header + "metadata: {name: {first: p}}\nspec: {}\n",
			[]string{`p.yaml: metadata.name: must be a string, got a mapping`}},

		{"relative allow path", doc("p", "{exec: {allow: [/usr/bin/, bin/true]}}"),
			[]string{`p.yaml: spec.exec.allow[1]: path "bin/true": must be absolute`}},
		{"dot-dot allow path", doc("p", "{exec: {allow: [/usr/bin/../../tmp/]}}"),
			[]string{`p.yaml: spec.exec.allow[0]: path "/usr/bin/../../tmp/": ".." components are not allowed`}},
		{"allow too deep", doc("p", "{exec: {allow: ["+deep+"]}}"),
			[]string{`p.yaml: spec.exec.allow[0]: path "` + deep + `": deeper than 32 components`}},
		{"empty allow list", doc("p", "{exec: {deny: [/bin/sh], allow: []}}"),
			[]string{`p.yaml: spec.exec.allow: empty list would allow nothing; omit the field, or deny "/" to refuse every exec`}},
		{"allow not a list", doc("p", "{exec: {allow: /usr/bin/}}"),
			[]string{`p.yaml: spec.exec.allow: must be a sequence, got string "/usr/bin/"`}},
		{"number in allow list", doc("p", "{exec: {allow: [/usr/bin/, 7]}}"),
			[]string{`p.yaml: spec.exec.allow[1]: must be a string, got number 7`}},
		{"relative exec path", doc("p", "{exec: {deny: [/bin/sh, bin/bash]}}"),
			[]string{`p.yaml: spec.exec.deny[1]: path "bin/bash": must be absolute`}},
		{"empty exec path", doc("p", `{exec: {deny: [""]}}`),
			[]string{`p.yaml: spec.exec.deny[0]: path "": must be absolute`}},
		{"dot-dot exec path", doc("p", "{exec: {deny: [/usr/../bin/nc]}}"),
			[]string{`p.yaml: spec.exec.deny[0]: path "/usr/../bin/nc": ".." components are not allowed`}},
		{"dot exec path", doc("p", "{exec: {deny: [/usr/./bin/]}}"),
			[]string{`p.yaml: spec.exec.deny[0]: path "/usr/./bin/": "." components are not allowed`}},
		{"exec component too long", doc("p", "{exec: {deny: [/"+long+"]}}"),
			[]string{`p.yaml: spec.exec.deny[0]: path "/` + long + `": component longer than 255 bytes`}},
		{"exec path too deep", doc("p", "{exec: {deny: ["+deep+"]}}"),
			[]string{`p.yaml: spec.exec.deny[0]: path "` + deep + `": deeper than 32 components`}},

		{"missing cidr", doc("p", "{network: {connect: {deny: [{ports: [22]}]}}}"),
			[]string{`p.yaml: spec.network.connect.deny[0].cidr: required`}},
		{"cidr prefix too long", doc("p", "{network: {connect: {deny: [{cidr: 10.0.0.0/33}]}}}"),
			[]string{`p.yaml: spec.network.connect.deny[0].cidr: "10.0.0.0/33" is not a CIDR: prefix length out of range`}},
		{"cidr bad address", doc("p", "{network: {connect: {deny: [{cidr: 10.0.0.256/8}]}}}"),
			[]string{`p.yaml: spec.network.connect.deny[0].cidr: "10.0.0.256/8" is not a CIDR: IPv4 field has value >255`}},
		{"not an address", doc("p", "{network: {connect: {deny: [{cidr: metadata.google.internal}]}}}"),
			[]string{`p.yaml: spec.network.connect.deny[0].cidr: "metadata.google.internal" is not a CIDR or an address: unexpected character`}},
		{"zoned address", doc("p", `{network: {connect: {deny: [{cidr: "fe80::1%eth0"}]}}}`),
			[]string{`p.yaml: spec.network.connect.deny[0].cidr: "fe80::1%eth0": zoned addresses are not allowed`}},
		{"port above 65535", doc("p", `{network: {connect: {deny: [{cidr: 0.0.0.0/0, ports: ["25", "70000"]}]}}}`),
			[]string{`p.yaml: spec.network.connect.deny[0].ports[1]: "70000" is not a port (1-65535)`}},
		{"port zero", doc("p", `{network: {connect: {deny: [{cidr: 0.0.0.0/0, ports: [0]}]}}}`),
			[]string{`p.yaml: spec.network.connect.deny[0].ports[0]: "0" is not a port (1-65535)`}},
		{"port not a number", doc("p", `{network: {connect: {deny: [{cidr: 0.0.0.0/0, ports: [smtp]}]}}}`),
			[]string{`p.yaml: spec.network.connect.deny[0].ports[0]: "smtp" is not a port (1-65535)`}},
		{"port fraction", doc("p", `{network: {connect: {deny: [{cidr: 0.0.0.0/0, ports: [25.5]}]}}}`),
			[]string{`p.yaml: spec.network.connect.deny[0].ports[0]: "25.5" is not a port (1-65535)`}},
		{"port range reversed", doc("p", `{network: {connect: {deny: [{cidr: 0.0.0.0/0, ports: ["6669-6660"]}]}}}`),
			[]string{`p.yaml: spec.network.connect.deny[0].ports[0]: "6669-6660" is not a port range: 6669 is above 6660`}},
		{"port range open", doc("p", `{network: {connect: {deny: [{cidr: 0.0.0.0/0, ports: ["1024-"]}]}}}`),
			[]string{`p.yaml: spec.network.connect.deny[0].ports[0]: "1024-" is not a port range (N-M, each 1-65535)`}},
		{"unknown protocol", doc("p", `{network: {connect: {deny: [{cidr: 0.0.0.0/0, protocol: sctp}]}}}`),
			[]string{`p.yaml: spec.network.connect.deny[0].protocol: "sctp" is not a protocol (tcp, udp or any)`}},

		{"empty namespace list", doc("p", "{selector: {namespaces: []}}"),
			[]string{`p.yaml: spec.selector.namespaces: empty list selects nothing; omit the field to match any`}},
		{"bad namespace", doc("p", "{selector: {namespaces: [shop, Shop]}}"),
			[]string{`p.yaml: spec.selector.namespaces[1]: "Shop" is not a namespace name: a lowercase RFC 1123 label`}},
		{"bad container name", doc("p", `{selector: {containers: ["my app"]}}`),
			[]string{`p.yaml: spec.selector.containers[0]: "my app" is not a container name (letters, digits, '_', '.', '-')`}},
		{"empty image list", doc("p", "{selector: {images: []}}"),
			[]string{`p.yaml: spec.selector.images: empty list selects nothing; omit the field to match any`}},
		{"bad image glob", doc("p", `{selector: {images: ["nginx:[1"]}}`),
			[]string{`p.yaml: spec.selector.images[0]: "nginx:[1" is not a valid glob: syntax error in pattern`}},
		{"bad label key", doc("p", `{selector: {podLabels: {matchLabels: {"-app": web}}}}`),
			[]string{`p.yaml: spec.selector.podLabels.matchLabels[-app]: key: Invalid value: "-app"`}},
		{"bad operator", doc("p", "{selector: {podLabels: {matchExpressions: [{key: tier, operator: Within, values: [a]}]}}}"),
			[]string{`p.yaml: spec.selector.podLabels.matchExpressions[0]: "Within" is not a valid label selector operator`}},
		{"In without values", doc("p", "{selector: {podLabels: {matchExpressions: [{key: a, operator: Exists}, {key: tier, operator: In}]}}}"),
			[]string{`p.yaml: spec.selector.podLabels.matchExpressions[1]: values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty`}},
		{"Exists with values", doc("p", "{selector: {podLabels: {matchExpressions: [{key: tier, operator: Exists, values: [a]}]}}}"),
			[]string{`p.yaml: spec.selector.podLabels.matchExpressions[0]: values: Invalid value: ["a"]: values set must be empty for exists and does not exist`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := Parse("p.yaml", []byte(tt.src))
			if ps != nil {
				t.Errorf("got %d policies with an error", len(ps))
			}
			checkErrorLines(t, err, tt.want...)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "p.yaml" {
				t.Errorf("error %v is not a *FieldError for p.yaml", err)
			}
		})
	}
}

func TestSeveralErrorsInOneFile(t *testing.T) {
	_, err := ParseFile("testdata/errors.yaml")
	const f = "testdata/errors.yaml: "
	checkErrorLines(t, err,
		f+`spec.exec: unknown field "permit"`,
		f+`apiVersion: "holdfast.dev/v1alpha2" is not supported (want "holdfast.dev/v1alpha1")`,
		f+`metadata.name: "Bad_Name" is not a valid name: `,
		f+`spec.selector.podLabels.matchExpressions[0]: "Within" is not a valid label selector operator`,
		f+`spec.exec.deny[1]: path "bin/bash": must be absolute`,
		f+`spec.exec.deny[2]: path "/usr/../bin/nc": ".." components are not allowed`,
		f+`spec.exec.allow[1]: path "bin/true": must be absolute`,
		f+`spec.network.connect.deny[0].cidr: "10.0.0.0/33" is not a CIDR: prefix length out of range`,
		f+`spec.network.connect.deny[1].protocol: "sctp" is not a protocol (tcp, udp or any)`,
		f+`spec.network.connect.deny[1].ports[1]: "70000" is not a port (1-65535)`,
		f+`spec.network.connect.deny[1].ports[2]: "6669-6660" is not a port range: 6669 is above 6660`,
	)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != "testdata/errors.yaml" || fe.Field == "" || fe.Document != 0 {
		t.Errorf("first error %+v: want a *FieldError naming the file and a field", fe)
	}
}

func TestMalformedValueIsReportedOnce(t *testing.T) {
	// The malformed name is dropped before validation, which must not then
	// add "metadata.name: required" for the same mistake.
	_, err := Parse("p.yaml", []byte(header+"metadata: {name: [a]}\nspec: {exec: {deny: [relative]}}\n"))
	checkErrorLines(t, err,
		`p.yaml: metadata.name: must be a string, got a sequence`,
		`p.yaml: spec.exec.deny[0]: path "relative": must be absolute`,
	)
}

func TestMultiDocument(t *testing.T) {
	ps := mustParseFile(t, "testdata/multi.yaml")
	if got := names(ps); got != "no-shells,no-metadata-service" {
		t.Fatalf("policies %s, want no-shells,no-metadata-service", got)
	}
	for i, p := range ps {
		if p.Document != i+1 {
			t.Errorf("%s: Document = %d, want %d (empty documents do not count)", p.Name, p.Document, i+1)
		}
	}
	if got, want := ps[1].Labels, map[string]string{"team": "platform"}; !reflect.DeepEqual(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	if got, want := ps[1].Spec.Network.Connect.Deny, []Destination{
		{CIDR: "169.254.169.254/32", Protocol: "any"},
		{CIDR: "fd00:ec2::254/128", Ports: []PortRange{"80"}, Protocol: "tcp"},
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("connect deny %+v, want %+v", got, want)
	}

	markers := map[string]string{
		"comment after marker":    doc("a", "{}") + "--- # second\n" + doc("b", "{}"),
		"flow document on marker": doc("a", "{}") + "--- {apiVersion: holdfast.dev/v1alpha1, kind: WorkloadPolicy, metadata: {name: b}, spec: {}}\n",
		"document end marker":     doc("a", "{}") + "...\n" + doc("b", "{}"),
		"CRLF line ends":          strings.ReplaceAll(doc("a", "{}")+"---\n"+doc("b", "{}"), "\n", "\r\n"),
		"trailing empty marker":   doc("a", "{}") + "---\n" + doc("b", "{}") + "---\n",
		"marker-like text in doc": doc("a", `{exec: {deny: ["/---/x"]}}`) + "---\n" + doc("b", "{}"),
	}
	for name, src := range markers {
		t.Run(name, func(t *testing.T) {
			if got := names(mustParse(t, "m.yaml", src)); got != "a,b" {
				t.Errorf("policies %q, want a,b", got)
			}
		})
	}
}

func TestMultiDocumentErrorsNameDocumentAndFileLine(t *testing.T) {
	broken := doc("b", "{exec: {deny: [/bin/sh}}")
	_, err := Parse("m.yaml", []byte(broken))
	checkErrorLines(t, err, `m.yaml: yaml: line 3: did not find expected ',' or ']'`)
	// Behind a 4-line document and a marker, the same error is 5 lines down.
	_, err = Parse("m.yaml", []byte(doc("a", "{}")+"---\n"+broken))
	checkErrorLines(t, err, `m.yaml: document 2: yaml: line 8: did not find expected ',' or ']'`)

	src := doc("a", "{exec: {deny: [sh]}}") + "---\n" + doc("b", "{}")
	_, err = Parse("m.yaml", []byte(src))
	checkErrorLines(t, err, `m.yaml: document 1: spec.exec.deny[0]: path "sh": must be absolute`)
}

func TestEmptyFileHasNoPolicies(t *testing.T) {
	for _, src := range []string{"", "\n\n", "# just a comment\n", "---\n---\n", "...\n", "--- ~\n"} {
		ps, err := Parse("e.yaml", []byte(src))
		if err != nil || len(ps) != 0 {
			t.Errorf("Parse(%q) = %d policies, %v; want none, no error", src, len(ps), err)
		}
	}
}

func TestTooManyErrors(t *testing.T) {
	for name, src := range map[string]string{
		"many documents": strings.Repeat("---\n- not a policy\n", 3*MaxErrors),
		"one document":   doc("p", "{exec: {deny: ["+strings.Repeat("relative, ", 2*MaxErrors)+"]}}"),
	} {
		_, err := Parse("many.yaml", []byte(src))
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != MaxErrors+1 || lines[MaxErrors] != "many.yaml: too many errors; stopped after 100" {
			t.Errorf("%s: got %d lines ending %q; want %d errors and a note that more were left out", name, len(lines), lines[len(lines)-1], MaxErrors)
		}
	}
}

func TestDuplicateNames(t *testing.T) {
	_, err := Parse("d.yaml", []byte(doc("x", "{}")+"---\n"+doc("z", "{}")+"---\n"+doc("x", "{}")))
	checkErrorLines(t, err, `d.yaml: document 3: metadata.name: policy "x" is already defined in document 1`)

	_, err = LoadDir("testdata/dir-dup")
	checkErrorLines(t, err, `testdata/dir-dup/b.yaml: document 2: metadata.name: policy "no-shells" is already defined in testdata/dir-dup/a.yaml`)

	a := mustParse(t, "a.yaml", doc("x", "{}"))
	b := mustParse(t, "b.yaml", doc("z", "{}")+"---\n"+doc("x", "{}"))
	_, err = NewSet(append(b, a...)...)
	checkErrorLines(t, err, `a.yaml: metadata.name: policy "x" is already defined in b.yaml (document 2)`)
}

func TestNewSetRefusesHandMadePolicies(t *testing.T) {
	// A policy that did not go through Parse has no validated selector.
	if _, err := NewSet(&Policy{Name: "x"}); err == nil {
		t.Error("NewSet accepted a policy not produced by Parse")
	}
	if _, err := NewSet(nil); err == nil {
		t.Error("NewSet accepted a nil policy")
	}
}

func TestLoadDir(t *testing.T) {
	set, err := LoadDir("testdata/dir-good")
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	// The hidden file and README.md are not read.
	if got := names(set.Policies()); got != "no-shells,web" {
		t.Errorf("policies %s, want no-shells,web", got)
	}
	if p, ok := set.Policy("web"); !ok || p.File != filepath.Join("testdata/dir-good", "10-web.yml") {
		t.Errorf("Policy(web) = %+v, %t", p, ok)
	}
	if _, ok := set.Policy("absent"); ok {
		t.Error("Policy(absent) found")
	}
}

func TestLoadDirBadFile(t *testing.T) {
	set, err := LoadDir("testdata/dir-bad")
	if set != nil {
		t.Error("LoadDir returned a set despite a bad file")
	}
	checkErrorLines(t, err,
		`testdata/dir-bad/10-broken.yaml: spec.exec.deny[0]: path "sh": must be absolute`,
		`testdata/dir-bad/20-syntax.yaml: yaml: line 3: did not find expected ',' or '}'`,
	)
}

func TestLoadDirMissing(t *testing.T) {
	_, err := LoadDir(filepath.Join(t.TempDir(), "absent"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "load policies: ") {
		t.Errorf("err = %v, want a load policies error wrapping ErrNotExist", err)
	}
}

func TestLoadDirEmpty(t *testing.T) {
	set, err := LoadDir(t.TempDir())
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	if n := len(set.Policies()); n != 0 {
		t.Errorf("%d policies in an empty directory", n)
	}
	rs, err := set.Compile(3, set.Select(Identity{Namespace: "x"}))
	if err != nil || rs.ID != 3 || len(rs.Exec)+len(rs.Connect) != 0 {
		t.Errorf("Compile of nothing = %+v, %v; want empty ruleset 3", rs, err)
	}
}

func TestParseFileRefusesSpecialAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.yaml")
	if err := mkfifo(fifo); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	// Reading a FIFO nobody writes would block forever.
	_, err := LoadDir(dir)
	checkErrorLines(t, err, "read policy file "+fifo+": not a regular file")
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}

	huge := filepath.Join(dir, "huge.yaml")
	data := []byte(doc("huge", "{}") + "# " + strings.Repeat("x", MaxFileSize) + "\n")
	if err := os.WriteFile(huge, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ParseFile(huge)
	checkErrorLines(t, err, huge+": file is larger than 1048576 bytes")

	sub := filepath.Join(dir, "sub.yaml")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = ParseFile(sub)
	checkErrorLines(t, err, "read policy file "+sub+": not a regular file")
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }

func TestDigest(t *testing.T) {
	base := mustParse(t, "a.yaml", doc("p", `{exec: {deny: [/bin/sh, /tmp/]}, network: {connect: {deny: [{cidr: 10.0.0.0/8, ports: ["22"], protocol: tcp}]}}}`))[0]
	same := mustParse(t, "b.yaml", header+`metadata:
  name: p
spec:
  selector:
    podLabels: {}
  exec:
    deny:
      - //bin//sh
      - /tmp//
  network:
    connect:
      deny:
        - cidr: 10.1.2.3/8
          ports: [22]
          protocol: TCP
`)[0]
	if base.Digest() != same.Digest() {
		t.Errorf("formatting changed the digest: %s vs %s", base.Digest(), same.Digest())
	}
	if !strings.HasPrefix(base.Digest(), "sha256:") || len(base.Digest()) != len("sha256:")+64 {
		t.Errorf("digest %q is not sha256:<64 hex>", base.Digest())
	}
	different := map[string]string{
		"other path":      `{exec: {deny: [/bin/bash, /tmp/]}, network: {connect: {deny: [{cidr: 10.0.0.0/8, ports: ["22"], protocol: tcp}]}}}`,
		"rule order":      `{exec: {deny: [/tmp/, /bin/sh]}, network: {connect: {deny: [{cidr: 10.0.0.0/8, ports: ["22"], protocol: tcp}]}}}`,
		"exact vs prefix": `{exec: {deny: [/bin/sh/, /tmp/]}, network: {connect: {deny: [{cidr: 10.0.0.0/8, ports: ["22"], protocol: tcp}]}}}`,
		"protocol":        `{exec: {deny: [/bin/sh, /tmp/]}, network: {connect: {deny: [{cidr: 10.0.0.0/8, ports: ["22"]}]}}}`,
		"selector":        `{selector: {containers: [main]}, exec: {deny: [/bin/sh, /tmp/]}, network: {connect: {deny: [{cidr: 10.0.0.0/8, ports: ["22"], protocol: tcp}]}}}`,
	}
	for name, spec := range different {
		if p := mustParse(t, "c.yaml", doc("p", spec))[0]; p.Digest() == base.Digest() {
			t.Errorf("%s: digest did not change", name)
		}
	}

	again := mustParse(t, "canonical.yaml", string(base.Canonical()))[0]
	if again.Digest() != base.Digest() || !reflect.DeepEqual(again.Spec, base.Spec) {
		t.Errorf("canonical form %s parses to a different policy", base.Canonical())
	}
}

func TestSetDigest(t *testing.T) {
	a := mustParse(t, "a.yaml", doc("a", "{exec: {deny: [/bin/sh]}}"))[0]
	b := mustParse(t, "b.yaml", doc("b", "{exec: {deny: [/bin/sh]}}"))[0]
	b2 := mustParse(t, "b.yaml", doc("b", "{exec: {deny: [/bin/dash]}}"))[0]
	ab, ba := mustSet(t, a, b), mustSet(t, b, a)
	if ab.Digest() != ba.Digest() {
		t.Error("set digest depends on the order policies were given")
	}
	for name, other := range map[string]*Set{"fewer": mustSet(t, a), "changed": mustSet(t, a, b2), "empty": mustSet(t)} {
		if other.Digest() == ab.Digest() {
			t.Errorf("%s set has the same digest", name)
		}
	}
}

// BenchmarkParse measures the worst files the size limit lets through: many
// small documents, and one document with many rules.
func BenchmarkParse(b *testing.B) {
	one := doc("p", `{exec: {deny: [/bin/sh]}}`)
	var many strings.Builder
	for i := 0; many.Len() < MaxFileSize-len(one)-20; i++ {
		fmt.Fprintf(&many, "---\n%s", doc(fmt.Sprintf("p%d", i), `{exec: {deny: [/bin/sh]}}`))
	}
	big := doc("p", "{exec: {deny: ["+strings.Repeat("/usr/bin/x,", (MaxFileSize-200)/11)+"]}}")
	for name, src := range map[string]string{"example": one, "many-documents": many.String(), "many-rules": big} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if _, err := Parse("bench.yaml", []byte(src)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, path := range []string{"testdata/web-lockdown.yaml", "testdata/multi.yaml", "testdata/errors.yaml", "testdata/dir-bad/20-syntax.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(doc("p", `{selector: {podLabels: {matchExpressions: [{key: a, operator: NotIn, values: [b]}]}}, network: {connect: {deny: [{cidr: "::ffff:10.0.0.1/104", ports: [1, "2-3"]}]}}}`)))
	f.Add([]byte("--- [\n...\n--- &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse("fuzz.yaml", data)
		if err != nil {
			if ps != nil || !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q: want no policies and the file named", err)
			}
			return
		}
		if _, err := NewSet(ps...); err != nil {
			t.Fatalf("NewSet of one valid file: %v", err)
		}
		for _, p := range ps {
			want, err := mustSet(t, p).Compile(1, []*Policy{p})
			if err != nil {
				t.Fatalf("Compile(%s): %v", p.Name, err)
			}
			// The canonical form is stable: it means the same policy.
			again, err := Parse("canonical.yaml", p.Canonical())
			if err != nil || len(again) != 1 {
				t.Fatalf("canonical form %s does not parse: %v", p.Canonical(), err)
			}
			if again[0].Digest() != p.Digest() {
				t.Fatalf("canonical form %s changed the digest", p.Canonical())
			}
			got, err := mustSet(t, again[0]).Compile(1, again)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("canonical form compiles to %+v (%v), want %+v", got, err, want)
			}
			p.Selects(Identity{Namespace: "ns", Labels: map[string]string{"a": "b"}, Container: "c", Image: "i:1"})
		}
	})
}

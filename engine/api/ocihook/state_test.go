package ocihook

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseState(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantID  string
		wantErr string
	}{
		{name: "runc createRuntime", in: `{"ociVersion":"1.0.2-dev","id":"c1","status":"creating","pid":9521,"bundle":"/b"}`, wantID: "c1"},
		{name: "with annotations", in: `{"id":"c2","status":"creating","pid":1,"bundle":"/b","annotations":{"a":"b"}}`, wantID: "c2"},
		{name: "empty", in: ``, wantErr: "empty OCI state"},
		{name: "whitespace", in: " \n\t", wantErr: "empty OCI state"},
		{name: "truncated", in: `{"id":"c1","status":`, wantErr: "malformed OCI state JSON"},
		{name: "not an object", in: `["c1"]`, wantErr: "malformed OCI state JSON"},
		{name: "pid is a string", in: `{"id":"c1","pid":"1"}`, wantErr: "malformed OCI state JSON"},
		{name: "trailing garbage", in: `{"id":"c1"} x`, wantErr: "malformed OCI state JSON"},
		{name: "no id", in: `{"status":"creating","bundle":"/b"}`, wantErr: "container id is empty"},
		{name: "control char in id", in: `{"id":"c\n1"}`, wantErr: "control character"},
		{name: "huge id", in: `{"id":"` + strings.Repeat("x", maxIDLen+1) + `"}`, wantErr: "bytes long"},
		{name: "negative pid", in: `{"id":"c1","pid":-4}`, wantErr: "negative pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ReadState(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.ID != tt.wantID {
				t.Fatalf("id = %q, want %q", st.ID, tt.wantID)
			}
		})
	}
}

func TestReadStateTooLarge(t *testing.T) {
	big := `{"id":"c1","annotations":{"x":"` + strings.Repeat("a", MaxStateSize) + `"}}`
	if _, err := ReadState(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("error = %v, want a size error", err)
	}
}

func TestCheckCreateState(t *testing.T) {
	ok := specs.State{ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/run/b"}
	tests := []struct {
		name    string
		stage   Stage
		mutate  func(*specs.State)
		wantErr string
	}{
		{"createRuntime ok", StageCreateRuntime, func(*specs.State) {}, ""},
		{"createContainer without pid", StageCreateContainer, func(s *specs.State) { s.Pid = 0 }, ""},
		{"created status", StageCreateRuntime, func(s *specs.State) { s.Status = specs.StateCreated }, ""},
		{"createRuntime without pid", StageCreateRuntime, func(s *specs.State) { s.Pid = 0 }, "has no pid"},
		{"running", StageCreateContainer, func(s *specs.State) { s.Status = specs.StateRunning }, `status "running"`},
		{"no bundle", StageCreateContainer, func(s *specs.State) { s.Bundle = "" }, "has no bundle"},
		{"relative bundle", StageCreateContainer, func(s *specs.State) { s.Bundle = "b" }, "not an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := ok
			tt.mutate(&st)
			err := CheckCreateState(&st, tt.stage)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadBundleConfig(t *testing.T) {
	dir := t.TempDir()
	_, err := ReadBundleConfig(dir)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, "config.json")) {
		t.Fatalf("missing config.json: error = %v, want ErrNotExist naming the file", err)
	}
	write := func(s string) { os.WriteFile(filepath.Join(dir, "config.json"), []byte(s), 0o600) }

	write(``)
	if _, err := ReadBundleConfig(dir); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty config.json: error = %v", err)
	}
	write(`{"linux":{"cgroupsPath":42}}`)
	if _, err := ReadBundleConfig(dir); err == nil || !strings.Contains(err.Error(), "malformed config.json") {
		t.Fatalf("bad cgroupsPath type: error = %v", err)
	}
	// Fields the hook does not read do not matter, whatever their shape;
	// of the annotations only an identity's are kept.
	write(`{"ociVersion":"9.9","process":{"args":["/bin/sh"]},"future":[1,2],"annotations":{"k":"v","io.kubernetes.pod.name":"p"},"linux":{"cgroupsPath":"/a/b","namespaces":[]}}`)
	c, err := ReadBundleConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.CgroupsPath() != "/a/b" || !maps.Equal(c.Annotations, map[string]string{CRIOPodName: "p"}) {
		t.Fatalf("config = %+v", c)
	}
	write(`{}`)
	c, err = ReadBundleConfig(dir)
	if err != nil || c.CgroupsPath() != "" {
		t.Fatalf("config without linux: %+v, %v", c, err)
	}
}

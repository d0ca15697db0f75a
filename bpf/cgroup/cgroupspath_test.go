package cgroup

import (
	"strings"
	"testing"
)

func TestParseCgroupsPath(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "/hf/c1", want: "/hf/c1"},
		{in: "/hf//c1/", want: "/hf/c1"},
		{in: "/a/../../etc", want: "/etc"},
		{in: "/..", want: "/"},
		{in: "system.slice:runc:abc", want: "/system.slice/runc-abc.scope"},
		{in: ":runc:abc", want: "/system.slice/runc-abc.scope"},
		{in: "kubepods-besteffort-pod12.slice:crio:abc", want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/crio-abc.scope"},
		{in: "kubepods-besteffort-pod12.slice:cri-containerd:abc", want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"},
		{in: "-.slice:p:abc", want: "/p-abc.scope"},
		{in: "machine.slice:p:my.slice", want: "/machine.slice/my.slice"},
		{in: "", wantErr: "empty"},
		{in: "hf/c1", wantErr: "relative"},
		{in: "system.slice:runc:", wantErr: "no unit name"},
		{in: "system:runc:abc", wantErr: "does not end in .slice"},
		{in: "a--b.slice:runc:abc", wantErr: "empty component"},
		{in: "system.slice:runc:a/b", wantErr: "must not contain '/'"},
		{in: "/a\x00b", wantErr: "NUL"},
	}
	for _, tt := range tests {
		got, err := ParseCgroupsPath(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCgroupsPath(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseCgroupsPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

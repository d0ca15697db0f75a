package cri

import (
	"strings"
	"testing"
)

func TestGRPCTarget(t *testing.T) {
	for in, want := range map[string]string{
		"unix:///run/containerd/containerd.sock": "unix:///run/containerd/containerd.sock",
		"/run/crio/crio.sock":                    "unix:///run/crio/crio.sock",
	} {
		if got, err := grpcTarget(in); err != nil || got != want {
			t.Errorf("grpcTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"tcp://127.0.0.1:1234", "run/containerd.sock", ""} {
		if _, err := grpcTarget(bad); err == nil || !strings.Contains(err.Error(), "unix:///") {
			t.Errorf("grpcTarget(%q) error = %v", bad, err)
		}
	}
}

package cri

import (
	"errors"
	"net"
	"os"
	"path/filepath"
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

func TestDetectEndpoint(t *testing.T) {
	dir := t.TempDir()
	file, sock := filepath.Join(dir, "not-a-socket"), filepath.Join(dir, "crio.sock")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := DetectEndpoint([]string{filepath.Join(dir, "missing.sock"), file, sock})
	if err != nil || got != "unix://"+sock {
		t.Errorf("DetectEndpoint = %q, %v; want the first socket, %s", got, err, sock)
	}
	if _, err := DetectEndpoint([]string{file}); !errors.Is(err, ErrNoEndpoint) || !strings.Contains(err.Error(), file) {
		t.Errorf("DetectEndpoint with no socket: %v; want ErrNoEndpoint naming the candidates", err)
	}
}

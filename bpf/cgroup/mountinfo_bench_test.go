package cgroup

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParseMountinfo parses the mountinfo of a node running 500
// containers (an overlay, a shm and a few bind mounts each), which every
// hook run reads to find the cgroup v2 mount.
//
//	go test -run '^$' -bench ParseMountinfo ./bpf/cgroup/
func BenchmarkParseMountinfo(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("22 27 0:21 / /proc rw,relatime - proc proc rw\n")
	sb.WriteString("30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
	for i := range 500 {
		id := fmt.Sprintf("%064x", i)
		fmt.Fprintf(&sb, "%d 27 0:%d / /run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/lib/containerd/l1:/var/lib/containerd/l2,upperdir=/var/lib/containerd/%d/fs,workdir=/var/lib/containerd/%d/work\n", 100+5*i, 100+i, id, i, i)
		fmt.Fprintf(&sb, "%d 27 0:%d / /run/containerd/io.containerd.grpc.v1.cri/sandboxes/%s/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k\n", 101+5*i, 600+i, id)
		for j := range 3 {
			fmt.Fprintf(&sb, "%d 27 0:%d / /var/lib/kubelet/pods/%s/volumes/kubernetes.io~projected/kube-api-access-%d rw,relatime - tmpfs tmpfs rw,size=1024k\n", 102+5*i+j, 1100+i, id, j)
		}
	}
	info := sb.String()
	b.SetBytes(int64(len(info)))
	for b.Loop() {
		m, err := ParseMountinfo(strings.NewReader(info))
		if err != nil || m.Root != "/sys/fs/cgroup" {
			b.Fatalf("parse: %+v %v", m, err)
		}
	}
}

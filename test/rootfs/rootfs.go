// Package rootfs builds minimal container root filesystems for tests from
// the host's static busybox. Applets are hard links, not symlinks, so each
// one resolves to its own path (/bin/sh stays /bin/sh) the way a distro
// image's binaries do; the applets tests deny are separate files.
package rootfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Busybox is where Debian's busybox-static installs its binary.
const Busybox = "/bin/busybox"

// Applets are linked into every rootfs under /bin.
var Applets = []string{"sh", "id", "echo", "sleep", "cat", "ls", "wget", "nc", "true", "false", "env", "ln", "cp", "mkdir"}

// Standalone applets get a copy of busybox of their own instead of a hard
// link: exec rules match the file itself (its inode), so denying a hard link
// of busybox would deny every applet. Tests deny these.
var Standalone = map[string]bool{"id": true, "wget": true, "nc": true}

// Build writes a busybox rootfs into dir (created if needed) and returns dir.
func Build(dir string) (string, error) {
	bb, err := exec.LookPath(Busybox)
	if err != nil {
		return "", fmt.Errorf("build rootfs in %s: busybox-static not installed: %w", dir, err)
	}
	for _, d := range []string{"bin", "usr/bin", "tmp", "proc", "sys", "dev", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", fmt.Errorf("build rootfs: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return "", fmt.Errorf("build rootfs: %w", err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", fmt.Errorf("build rootfs: read busybox: %w", err)
	}
	target := filepath.Join(dir, "bin", "busybox")
	if err := os.WriteFile(target, data, 0o755); err != nil {
		return "", fmt.Errorf("build rootfs: %w", err)
	}
	for _, a := range Applets {
		link := filepath.Join(dir, "bin", a)
		os.Remove(link)
		if Standalone[a] {
			if err := os.WriteFile(link, data, 0o755); err != nil {
				return "", fmt.Errorf("build rootfs: copy applet %s: %w", a, err)
			}
			continue
		}
		if err := os.Link(target, link); err != nil {
			return "", fmt.Errorf("build rootfs: link applet %s: %w", a, err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1 localhost\n::1 localhost\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("build rootfs: %w", err)
		}
	}
	return dir, nil
}

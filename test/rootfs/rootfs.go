// Package rootfs builds minimal container root filesystems for tests from
// the host's static busybox, laid out like a merged-/usr distro image (/bin,
// /sbin, /lib, /lib64 are symlinks into /usr). Applets are hard links of one
// file, so exec rules, which match files by identity, deny all of busybox
// or none of it; /usr/bin/id is the host's dynamically linked id with its
// loader and libraries, a file of its own that a rule can deny alone.
package rootfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Busybox is where Debian's busybox-static installs its binary.
const Busybox = "/bin/busybox"

// Applets are linked into every rootfs under /usr/bin (/bin).
var Applets = []string{"sh", "echo", "sleep", "cat", "ls", "wget", "nc", "true", "false", "env", "ln", "cp", "mkdir"}

// Build writes a busybox rootfs into dir (created if needed) and returns dir.
func Build(dir string) (string, error) {
	bb, err := exec.LookPath(Busybox)
	if err != nil {
		return "", fmt.Errorf("build rootfs in %s: busybox-static not installed: %w", dir, err)
	}
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "tmp", "proc", "sys", "dev", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", fmt.Errorf("build rootfs: %w", err)
		}
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		link := filepath.Join(dir, d)
		if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		if err := os.Symlink("usr/"+d, link); err != nil {
			return "", fmt.Errorf("build rootfs: merged /usr: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return "", fmt.Errorf("build rootfs: %w", err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", fmt.Errorf("build rootfs: read busybox: %w", err)
	}
	target := filepath.Join(dir, "usr", "bin", "busybox")
	if err := os.WriteFile(target, data, 0o755); err != nil {
		return "", fmt.Errorf("build rootfs: %w", err)
	}
	for _, a := range Applets {
		link := filepath.Join(dir, "usr", "bin", a)
		os.Remove(link)
		if err := os.Link(target, link); err != nil {
			return "", fmt.Errorf("build rootfs: link applet %s: %w", a, err)
		}
	}
	if err := CopyDynamic(dir, "/usr/bin/id"); err != nil {
		return "", fmt.Errorf("build rootfs: %w", err)
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

// CopyDynamic copies the host binary at path into the rootfs at the same
// path, with the loader and libraries ldd names for it.
func CopyDynamic(dir, path string) error {
	libs, err := Libraries(path)
	if err != nil {
		return fmt.Errorf("copy %s: %w", path, err)
	}
	for _, f := range append([]string{path}, libs...) {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("copy %s: %w", path, err)
		}
		// Written through the rootfs's own /lib and /lib64 symlinks.
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("copy %s: %w", path, err)
		}
		os.Remove(dst)
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			return fmt.Errorf("copy %s: %w", path, err)
		}
	}
	return nil
}

// Libraries are the loader and libraries ldd names for a host binary.
func Libraries(path string) ([]string, error) {
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	var files []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			files = append(files, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			files = append(files, f[0])
		}
	}
	return files, nil
}

package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteConfigMap lays files out in dir as kubelet updates a ConfigMap
// volume: the files go into a new `..<timestamp>` directory, a `..data`
// symlink to it replaces the old one by rename, each key is a symlink
// `key -> ..data/key`, and the previous timestamp directory is removed.
// A watcher of dir sees the rename of `..data`, not writes to the files.
func WriteConfigMap(dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("configmap volume %s: %w", dir, err)
	}
	dataLink := filepath.Join(dir, "..data")
	old, _ := os.Readlink(dataLink)

	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("configmap volume %s: %w", dir, err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(ts, name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("configmap volume %s: %w", dir, err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return fmt.Errorf("configmap volume %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dataLink); err != nil {
		return fmt.Errorf("configmap volume %s: swap ..data: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("configmap volume %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if _, keep := files[name]; !keep && !strings.HasPrefix(name, "..") {
			os.Remove(filepath.Join(dir, name))
		}
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return fmt.Errorf("configmap volume %s: %w", dir, err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			return fmt.Errorf("configmap volume %s: remove %s: %w", dir, old, err)
		}
	}
	return nil
}

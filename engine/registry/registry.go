// Package registry is the engine's durable record of registered containers
// and of the rulesets their cgroups point at. It is written before the BPF
// maps are touched, so a restarted engine can reconcile the pinned maps with
// what it had promised. Each container is one small file replaced by rename,
// so a crash mid-write leaves the old record or the new one, never a torn one.
package registry

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// Store is a registry on disk under Dir. It is not safe for concurrent use;
// the engine serialises access.
type Store struct {
	dir        string
	containers map[string]api.Container
	rulesets   Rulesets
}

// Rulesets assigns IDs to distinct sets of selecting policies.
type Rulesets struct {
	Next  uint32            `json:"next"`
	ByKey map[string]uint32 `json:"byKey"`
}

// Open loads the registry under dir, creating it if needed. Unreadable
// entries are reported, not silently dropped.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir, containers: map[string]api.Container{}, rulesets: Rulesets{Next: 1, ByKey: map[string]uint32{}}}
	if err := os.MkdirAll(s.containerDir(), 0o700); err != nil {
		return nil, fmt.Errorf("open registry %s: %w", dir, err)
	}
	entries, err := os.ReadDir(s.containerDir())
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue // temp files of an interrupted write
		}
		path := filepath.Join(s.containerDir(), name)
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read registration %s: %w", path, err))
			continue
		}
		var c api.Container
		if err := json.Unmarshal(data, &c); err != nil {
			errs = append(errs, fmt.Errorf("decode registration %s: %w", path, err))
			continue
		}
		s.containers[c.ID] = c
	}
	data, err := os.ReadFile(s.rulesetsFile())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		errs = append(errs, fmt.Errorf("read rulesets %s: %w", s.rulesetsFile(), err))
	default:
		if err := json.Unmarshal(data, &s.rulesets); err != nil {
			errs = append(errs, fmt.Errorf("decode rulesets %s: %w", s.rulesetsFile(), err))
		}
		if s.rulesets.ByKey == nil {
			s.rulesets.ByKey = map[string]uint32{}
		}
		if s.rulesets.Next == 0 {
			s.rulesets.Next = 1
		}
	}
	return s, errors.Join(errs...)
}

func (s *Store) containerDir() string { return filepath.Join(s.dir, "containers") }
func (s *Store) rulesetsFile() string { return filepath.Join(s.dir, "rulesets.json") }

// fileName maps any container ID to a safe, unique file name.
func fileName(id string) string {
	safe := id != "" && len(id) <= 128
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			safe = false
			break
		}
	}
	if safe {
		return id + ".json"
	}
	return "x-" + hex.EncodeToString([]byte(id)) + ".json"
}

// Get returns a registration.
func (s *Store) Get(id string) (api.Container, bool) {
	c, ok := s.containers[id]
	return c, ok
}

// List returns all registrations sorted by ID.
func (s *Store) List() []api.Container {
	out := make([]api.Container, 0, len(s.containers))
	for _, c := range s.containers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Len is the number of registrations.
func (s *Store) Len() int { return len(s.containers) }

// Put records a registration durably, replacing any with the same ID.
func (s *Store) Put(c api.Container) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode registration %s: %w", c.ID, err)
	}
	if err := WriteFileAtomic(filepath.Join(s.containerDir(), fileName(c.ID)), data); err != nil {
		return fmt.Errorf("record registration %s: %w", c.ID, err)
	}
	s.containers[c.ID] = c
	return nil
}

// Delete forgets a registration; a missing one is not an error.
func (s *Store) Delete(id string) error {
	path := filepath.Join(s.containerDir(), fileName(id))
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget registration %s: %w", id, err)
	}
	delete(s.containers, id)
	return nil
}

// RulesetID returns the ID of the ruleset for key, allocating and recording
// a new one if key is new. created reports the allocation.
func (s *Store) RulesetID(key string) (id uint32, created bool, err error) {
	if id, ok := s.rulesets.ByKey[key]; ok {
		return id, false, nil
	}
	id = s.rulesets.Next
	s.rulesets.ByKey[key] = id
	s.rulesets.Next++
	if err := s.saveRulesets(); err != nil {
		delete(s.rulesets.ByKey, key)
		s.rulesets.Next--
		return 0, false, err
	}
	return id, true, nil
}

// RulesetKeys returns the recorded ruleset IDs by key.
func (s *Store) RulesetKeys() map[string]uint32 {
	out := make(map[string]uint32, len(s.rulesets.ByKey))
	for k, v := range s.rulesets.ByKey {
		out[k] = v
	}
	return out
}

// ForgetRuleset drops a ruleset ID that nothing uses any more.
func (s *Store) ForgetRuleset(key string) error {
	if _, ok := s.rulesets.ByKey[key]; !ok {
		return nil
	}
	id := s.rulesets.ByKey[key]
	delete(s.rulesets.ByKey, key)
	if err := s.saveRulesets(); err != nil {
		s.rulesets.ByKey[key] = id
		return err
	}
	return nil
}

func (s *Store) saveRulesets() error {
	data, err := json.Marshal(s.rulesets)
	if err != nil {
		return fmt.Errorf("encode rulesets: %w", err)
	}
	if err := WriteFileAtomic(s.rulesetsFile(), data); err != nil {
		return fmt.Errorf("record rulesets: %w", err)
	}
	return nil
}

// WriteFileAtomic replaces path with data via a temp file and rename, so a
// reader (or a restarted engine) sees either the old or the new content.
// It does not fsync: the records guard against an engine crash, and a node
// reboot discards the pinned BPF state they describe anyway.
func WriteFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

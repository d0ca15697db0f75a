// Package registry is the engine's durable record of registered containers
// and of the rulesets their cgroups point at. It is written before the BPF
// maps are touched, so a restarted engine can reconcile the pinned maps with
// what it had promised.
//
// The record is a journal: one JSON line appended per change to a file the
// store keeps open, so a registration costs one write(2) instead of a file
// create and rename. Opening replays the journal and rewrites it compacted
// (temp file and rename). A line cut short by a crash is ignored. The
// journal names the boot it was written in: after a reboot the cgroups and
// pinned maps it describes are gone and cgroup IDs get reused, so the
// registrations are dropped rather than trusted.
//
// The engine (engine/daemon) and engine/eventstream import it; registrars
// do not (they register offline through engine/api/fallback).
package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	gojson "github.com/goccy/go-json"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/jsonenc"
)

// StatePerm is the mode of every file the engine keeps in its state dir:
// they name workloads and rules, for root only.
const StatePerm = 0o600

const journalName = "registry.jsonl"

// Store is a registry on disk under a directory. It is not safe for
// concurrent use; the engine serialises access.
type Store struct {
	dir        string
	journal    *os.File
	size       int64 // bytes of whole lines in the journal
	lines      int   // lines in the journal, for compaction
	bootID     string
	containers map[string]api.Container
	// byCgroup maps a cgroup ID to its containers' IDs, sorted: almost
	// always one, so a slice, not a set per cgroup.
	byCgroup map[uint64][]string
	rulesets map[string]uint32 // selecting-policies key → ruleset ID
	nextID   uint32
	// thisBoot: the journal's last boot line is this boot's.
	thisBoot bool
}

// entry is one journal line.
type entry struct {
	Op        string         `json:"op"` // boot, put, delete, ruleset, forget-ruleset, next-ruleset
	BootID    string         `json:"bootId,omitempty"`
	Container *api.Container `json:"container,omitempty"`
	ID        string         `json:"id,omitempty"`
	Key       string         `json:"key,omitempty"`
	Ruleset   uint32         `json:"ruleset,omitempty"`
}

// appendLine appends e's journal line. A registration's put and delete,
// which a container's start and delete wait for, are written by hand; the
// rest by encoding/json. Both write the same (TestEntryLineIsMarshal).
func (e entry) appendLine(b []byte) ([]byte, error) {
	switch {
	case e.Op == "put" && e.Container != nil && e.BootID == "" && e.ID == "" && e.Key == "" && e.Ruleset == 0:
		b = append(b, `{"op":"put","container":`...)
		b = api.AppendContainer(b, e.Container)
	case e.Op == "delete" && e.ID != "" && e.BootID == "" && e.Container == nil && e.Key == "" && e.Ruleset == 0:
		b = append(b, `{"op":"delete","id":`...)
		b = jsonenc.String(b, e.ID)
	default:
		line, err := json.Marshal(e)
		if err != nil {
			return b, err
		}
		return append(append(b, line...), '\n'), nil
	}
	return append(b, '}', '\n'), nil
}

// bootIDFile identifies the running kernel boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// Open loads the registry under dir, creating it if needed. Lines it cannot
// decode are reported in the error, which comes with a usable Store.
func Open(dir string) (*Store, error) {
	s := &Store{dir: dir, containers: map[string]api.Container{}, byCgroup: map[uint64][]string{}, rulesets: map[string]uint32{}, nextID: 1}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open registry %s: %w", dir, err)
	}
	boot, err := os.ReadFile(bootIDFile)
	if err != nil {
		return nil, fmt.Errorf("open registry %s: read boot id: %w", dir, err)
	}
	s.bootID = strings.TrimSpace(string(boot))

	replayErr := s.replay()
	if replayErr == nil && s.thisBoot && !s.mostlyHistory(s.lines) {
		// Compact already: append to it as it is. Rewriting 10,000
		// registrations would cost the restart tens of milliseconds.
		if err := s.reopen(); err == nil {
			return s, nil
		}
	}
	if err := s.compact(); err != nil {
		// A full disk must not stop the engine (and so the enforcement of
		// what the journal holds): keep appending to the journal as is.
		if ferr := s.reopen(); ferr != nil {
			return nil, errors.Join(replayErr, err, ferr)
		}
	}
	return s, replayErr
}

// reopen continues the existing journal when it cannot be compacted. Its
// boot line must be this boot's, or a replay would drop what follows.
func (s *Store) reopen() error {
	f, err := os.OpenFile(s.path(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, StatePerm)
	if err != nil {
		return fmt.Errorf("open registry %s: %w", s.path(), err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open registry %s: %w", s.path(), err)
	}
	s.journal, s.size = f, fi.Size()
	if err := s.trimTorn(); err != nil {
		return err
	}
	if s.thisBoot {
		return nil
	}
	return s.write(entry{Op: "boot", BootID: s.bootID})
}

// trimTorn cuts a last line without its newline, so the next append
// starts a line of its own instead of merging with the fragment.
func (s *Store) trimTorn() error {
	data, err := os.ReadFile(s.path())
	if err != nil {
		return fmt.Errorf("read registry %s: %w", s.path(), err)
	}
	whole := int64(bytes.LastIndexByte(data, '\n') + 1)
	if whole != int64(len(data)) {
		if err := s.journal.Truncate(whole); err != nil {
			return fmt.Errorf("trim torn line of registry %s: %w", s.path(), err)
		}
	}
	s.size = whole
	return nil
}

func (s *Store) path() string { return filepath.Join(s.dir, journalName) }

func (s *Store) replay() error {
	data, err := os.ReadFile(s.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read registry %s: %w", s.path(), err)
	}
	var errs []error
	sameBoot := false
	lines := bytes.Split(data, []byte("\n"))
	entries, decodeErrs, puts := decodeLines(lines)
	// Sized for the registrations at once: growing a map of 10,000 copies
	// it several times over.
	s.containers = make(map[string]api.Container, puts)
	s.byCgroup = make(map[uint64][]string, puts)
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e := entries[i]
		if err := decodeErrs[i]; err != nil {
			if i == len(lines)-1 {
				break // no newline yet: a write cut short by a crash
			}
			// A fragment of a cut write followed by a whole entry: keep
			// the entry. A lost line can only lose a registration, whose
			// cgroup entry then stays enforced as an orphan.
			at := bytes.LastIndex(line, []byte(`{"op":`))
			if at <= 0 || json.Unmarshal(line[at:], &e) != nil {
				errs = append(errs, fmt.Errorf("registry %s line %d: %w", s.path(), i+1, err))
				continue
			}
			errs = append(errs, fmt.Errorf("registry %s line %d: torn entry skipped before a whole one", s.path(), i+1))
		}
		s.lines++
		if e.Op == "boot" {
			sameBoot = e.BootID == s.bootID
			continue
		}
		if sameBoot { // else written before a reboot: nothing it names exists
			s.applyEntry(e)
		}
	}
	s.thisBoot = sameBoot
	return errors.Join(errs...)
}

// decodeLines decodes journal lines on every CPU: decoding is most of an
// engine restart's time with thousands of registrations. Lines as
// encoding/json writes them take decodeFast; any other line takes
// goccy/go-json, 2-3x faster than encoding/json (Open of 10,000
// registrations, -bench Open10000: 27-38 ms with decodeFast against 37-75
// ms with goccy/go-json alone, half the allocations). Entry i and its error
// belong to line i. Each worker makes the containers it decodes share what
// they repeat (share.go); puts counts the put lines, less the deletes.
func decodeLines(lines [][]byte) (entries []entry, errs []error, puts int) {
	entries, errs = make([]entry, len(lines)), make([]error, len(lines))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(lines)/512))
	counts := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh := newSharing()
			for i := w; i < len(lines); i += workers {
				if len(bytes.TrimSpace(lines[i])) == 0 {
					continue
				}
				e := &entries[i]
				if !decodeFast(lines[i], sh, e) {
					*e = entry{}
					if errs[i] = gojson.Unmarshal(lines[i], e); errs[i] != nil {
						continue
					}
					if e.Op == "put" && e.Container != nil {
						sh.share(e.Container)
					}
				}
				switch {
				case e.Op == "put" && e.Container != nil:
					counts[w]++
				case e.Op == "delete":
					counts[w]--
				}
			}
		}()
	}
	wg.Wait()
	for _, n := range counts {
		puts += n
	}
	return entries, errs, max(puts, 0)
}

func (s *Store) applyEntry(e entry) {
	switch e.Op {
	case "put":
		if e.Container != nil {
			s.unindex(e.Container.ID)
			s.index(*e.Container)
		}
	case "delete":
		s.unindex(e.ID)
	case "ruleset":
		s.rulesets[e.Key] = e.Ruleset
		if e.Ruleset >= s.nextID {
			s.nextID = e.Ruleset + 1
		}
	case "forget-ruleset":
		delete(s.rulesets, e.Key)
	case "next-ruleset":
		if e.Ruleset > s.nextID {
			s.nextID = e.Ruleset
		}
	}
}

// compact rewrites the journal as the current state and reopens it for
// appending. The rename makes the switch atomic.
func (s *Store) compact() error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	lines := 0
	write := func(e entry) {
		enc.Encode(e)
		lines++
	}
	write(entry{Op: "boot", BootID: s.bootID})
	// Keep the next ID to hand out, so IDs are never reused.
	write(entry{Op: "next-ruleset", Ruleset: s.nextID})
	for _, key := range slices.Sorted(maps.Keys(s.rulesets)) {
		write(entry{Op: "ruleset", Key: key, Ruleset: s.rulesets[key]})
	}
	for _, c := range s.List() {
		write(entry{Op: "put", Container: &c})
	}
	if err := linux.WriteFileAtomic(s.path(), buf.Bytes(), StatePerm); err != nil {
		return fmt.Errorf("compact registry: %w", err)
	}
	f, err := os.OpenFile(s.path(), os.O_WRONLY|os.O_APPEND, StatePerm)
	if err != nil {
		return fmt.Errorf("open registry %s: %w", s.path(), err)
	}
	if s.journal != nil {
		s.journal.Close()
	}
	s.journal, s.lines, s.size = f, lines, int64(buf.Len())
	return nil
}

// append writes one change. A single write keeps each line whole.
func (s *Store) append(e entry) error {
	if err := s.write(e); err != nil {
		return err
	}
	// Compact once the journal is mostly history. The entry is recorded
	// already, so a failed compaction (a full disk) only delays the next.
	if s.mostlyHistory(s.lines) {
		s.compact()
	}
	return nil
}

// mostlyHistory says a journal of n lines is worth compacting.
func (s *Store) mostlyHistory(n int) bool {
	return n > 1024 && n > 4*(len(s.containers)+len(s.rulesets))
}

// write appends one line. A write cut short (ENOSPC part-way) is cut off
// again, so no torn line stays in the journal to merge with the next one.
func (s *Store) write(e entry) error {
	line, err := e.appendLine(nil)
	if err != nil {
		return fmt.Errorf("encode registry entry: %w", err)
	}
	if _, err := s.journal.Write(line); err != nil {
		if terr := s.journal.Truncate(s.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("cut torn line: %w", terr))
		}
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("append to registry %s: state dir full, change not recorded: %w", s.path(), err)
		}
		return fmt.Errorf("append to registry %s: %w", s.path(), err)
	}
	s.size += int64(len(line))
	s.lines++
	return nil
}

// Close closes the journal.
func (s *Store) Close() error {
	if s.journal == nil {
		return nil
	}
	return s.journal.Close()
}

func (s *Store) index(c api.Container) {
	s.containers[c.ID] = c
	ids := s.byCgroup[c.CgroupID]
	at, _ := slices.BinarySearch(ids, c.ID)
	s.byCgroup[c.CgroupID] = slices.Insert(ids, at, c.ID)
}

func (s *Store) unindex(id string) {
	c, ok := s.containers[id]
	if !ok {
		return
	}
	delete(s.containers, id)
	ids := slices.DeleteFunc(s.byCgroup[c.CgroupID], func(other string) bool { return other == id })
	if len(ids) == 0 {
		delete(s.byCgroup, c.CgroupID)
		return
	}
	s.byCgroup[c.CgroupID] = ids
}

// Get returns a registration. Its maps and slices are the store's, shared
// with other registrations: read them, never modify them.
func (s *Store) Get(id string) (api.Container, bool) {
	c, ok := s.containers[id]
	return c, ok
}

// List returns all registrations sorted by ID; like Get's, their maps and
// slices are read-only.
func (s *Store) List() []api.Container {
	// Sorting the IDs, not the large structs: a restart lists them all.
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]api.Container, len(ids))
	for i, id := range ids {
		out[i] = s.containers[id]
	}
	return out
}

// Len is the number of registrations.
func (s *Store) Len() int { return len(s.containers) }

// InCgroup returns the IDs of the containers registered with a cgroup,
// sorted (usually one; a runtime may reuse a cgroup for a restarted container).
func (s *Store) InCgroup(cgroupID uint64) []string {
	return slices.Clone(s.byCgroup[cgroupID])
}

// Put records a registration, replacing any with the same ID.
func (s *Store) Put(c api.Container) error {
	(*sharing)(nil).share(&c)
	if err := s.append(entry{Op: "put", Container: &c}); err != nil {
		return fmt.Errorf("record registration %s: %w", c.ID, err)
	}
	s.unindex(c.ID)
	s.index(c)
	return nil
}

// Delete forgets a registration; a missing one is not an error.
func (s *Store) Delete(id string) error {
	if _, ok := s.containers[id]; !ok {
		return nil
	}
	if err := s.append(entry{Op: "delete", ID: id}); err != nil {
		return fmt.Errorf("forget registration %s: %w", id, err)
	}
	s.unindex(id)
	return nil
}

// RulesetID returns the ID of the ruleset for key, allocating and recording
// a new one if key is new. created reports the allocation. IDs are never
// reused, so a map entry can never be mistaken for another ruleset's.
func (s *Store) RulesetID(key string) (id uint32, created bool, err error) {
	if id, ok := s.rulesets[key]; ok {
		return id, false, nil
	}
	id = s.nextID
	if err := s.append(entry{Op: "ruleset", Key: key, Ruleset: id}); err != nil {
		return 0, false, fmt.Errorf("record ruleset %d: %w", id, err)
	}
	s.rulesets[key] = id
	s.nextID++
	return id, true, nil
}

// ReserveRulesetIDs makes sure IDs up to max are never handed out, for IDs
// found in use in the maps that the registry does not know (a lost state
// dir), so a new ruleset cannot collide with an enforced one.
func (s *Store) ReserveRulesetIDs(max uint32) error {
	if max < s.nextID {
		return nil
	}
	if err := s.append(entry{Op: "next-ruleset", Ruleset: max + 1}); err != nil {
		return fmt.Errorf("reserve ruleset ids up to %d: %w", max, err)
	}
	s.nextID = max + 1
	return nil
}

// RulesetKeys returns the recorded ruleset IDs by key.
func (s *Store) RulesetKeys() map[string]uint32 {
	out := make(map[string]uint32, len(s.rulesets))
	for k, v := range s.rulesets {
		out[k] = v
	}
	return out
}

// ForgetRuleset drops a ruleset ID that nothing uses any more.
func (s *Store) ForgetRuleset(key string) error {
	id, ok := s.rulesets[key]
	if !ok {
		return nil
	}
	if err := s.append(entry{Op: "forget-ruleset", Key: key, Ruleset: id}); err != nil {
		return fmt.Errorf("forget ruleset %d: %w", id, err)
	}
	delete(s.rulesets, key)
	return nil
}

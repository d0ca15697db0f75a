package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/policy"
)

// DefaultPolicyDebounce is how long the watcher waits after the first change
// of a burst before it reads the policy directory: an editor's save or
// kubelet's ConfigMap swap is several events within microseconds.
const DefaultPolicyDebounce = 200 * time.Millisecond

// watchRetry is how long a failed watch waits before it tries again.
const watchRetry = time.Second

// policyWatch is the watcher's state, guarded by Engine.mu.
type policyWatch struct {
	running bool
	err     error // why the directory is not watched
	// reported is the last refusal written out, so a refusal is reported
	// once and not on every event until it is fixed.
	reported string
}

// WatchPolicies applies every change of the policy directory until ctx is
// done: plain file edits, and kubelet's ConfigMap volume updates, where a new
// `..<timestamp>` directory is swapped in by renaming the `..data` symlink
// (the key files are symlinks through it, so only the rename is seen).
// A refused change keeps the last good set, reported in status, in the
// events stream and in the log.
func (e *Engine) WatchPolicies(ctx context.Context) error {
	debounce := e.opts.PolicyDebounce
	if debounce <= 0 {
		debounce = DefaultPolicyDebounce
	}
	for {
		err := e.watchPolicyDir(ctx, debounce)
		if ctx.Err() != nil {
			return nil
		}
		e.mu.Lock()
		e.watch = policyWatch{err: err, reported: e.watch.reported}
		e.mu.Unlock()
		e.log.Error("policy directory not watched; retrying", "dir", e.opts.PolicyDir, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(watchRetry):
		}
	}
}

// watchPolicyDir watches until ctx is done or the watch breaks (the
// directory went away, the event queue overflowed); it returns why.
func (e *Engine) watchPolicyDir(ctx context.Context, debounce time.Duration) error {
	dir := e.opts.PolicyDir
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policy dir %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch policy dir %s: %w", dir, err)
	}
	e.mu.Lock()
	e.watch.running, e.watch.err = true, nil
	e.mu.Unlock()
	// Whatever changed before the watch was in place.
	e.applyPolicyDir(ctx)

	timer := time.NewTimer(debounce)
	timer.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("watch policy dir %s: watcher closed", dir)
			}
			if filepath.Clean(ev.Name) == filepath.Clean(dir) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				return fmt.Errorf("watch policy dir %s: directory removed or renamed", dir)
			}
			// The first event of a burst starts the wait; later ones are
			// covered by the read that follows it.
			if !pending {
				pending = true
				timer.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("watch policy dir %s: watcher closed", dir)
			}
			// Events may be lost (overflow): a new watch reads the dir again.
			return fmt.Errorf("watch policy dir %s: %w", dir, err)
		case <-timer.C:
			pending = false
			e.applyPolicyDir(ctx)
		}
	}
}

// applyPolicyDir reads the policy directory and, if it differs from the
// set in force, reloads it through Reload (new rulesets before cgroup
// entries move to them, so no container is ever without rules).
func (e *Engine) applyPolicyDir(ctx context.Context) {
	dir := e.opts.PolicyDir
	set, err := policy.LoadDir(dir)
	if err == nil {
		e.mu.Lock()
		same := e.policyErr == nil && e.policies.Digest() == set.Digest()
		if same {
			// In force already (a `policy reload` got here first): a later
			// refusal, even the same as before, is news again.
			e.watch.reported = ""
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		if err = e.Reload(ctx); err == nil {
			e.mu.Lock()
			e.watch.reported = ""
			names := e.policyNamesLocked()
			e.mu.Unlock()
			e.log.Info("policy directory changed; policies applied", "dir", dir, "policies", names)
			e.writeEvent(api.PolicyEvent{Schema: api.EventSchema, Time: time.Now(), Action: api.ActionPolicyApplied, Dir: dir, Policies: names})
			return
		}
	}
	e.mu.Lock()
	e.policyErr = err
	repeat := e.watch.reported == err.Error()
	e.watch.reported = err.Error()
	names := e.policyNamesLocked()
	e.mu.Unlock()
	if repeat {
		return
	}
	e.log.Error("policy directory change refused; the last good policies stay in force", "dir", dir, "policies", names, "err", err)
	e.writeEvent(api.PolicyEvent{Schema: api.EventSchema, Time: time.Now(), Action: api.ActionPolicyRefused, Dir: dir, Policies: names, Errors: policyFileErrors(err)})
}

func (e *Engine) policyNamesLocked() []string {
	names := []string{}
	for _, p := range e.policies.Policies() {
		names = append(names, p.Name)
	}
	return names
}

// policyFileErrors splits a policy load error by file; problems not tied
// to one file (the directory unreadable) are listed under File "".
func policyFileErrors(err error) []api.PolicyFileError {
	byFile := map[string][]string{}
	var walk func(error)
	walk = func(err error) {
		var fe *policy.FieldError
		switch x := err.(type) {
		case *policy.FieldError:
			byFile[x.File] = append(byFile[x.File], x.Error())
		case interface{ Unwrap() []error }:
			for _, inner := range x.Unwrap() {
				walk(inner)
			}
		default:
			// A wrapper around per-file errors adds only context.
			if inner := errors.Unwrap(err); inner != nil && errors.As(inner, &fe) {
				walk(inner)
				return
			}
			byFile[""] = append(byFile[""], err.Error())
		}
	}
	walk(err)
	out := make([]api.PolicyFileError, 0, len(byFile))
	for _, file := range slices.Sorted(maps.Keys(byFile)) {
		out = append(out, api.PolicyFileError{File: file, Errors: byFile[file]})
	}
	return out
}

// notReadyLocked says why the engine is not ready, or "" when it is: pins
// in place, registry reconciled and policies loaded (both done by New),
// and the policy directory watched when the engine was asked to watch it.
func (e *Engine) notReadyLocked(pinned int) string {
	switch {
	case pinned == 0:
		return fmt.Sprintf("no pinned programs under %s", e.opts.BPFDir)
	case e.policies == nil:
		return "no policies loaded"
	case e.opts.WatchPolicies && e.watch.err != nil:
		return fmt.Sprintf("policy directory not watched: %v", e.watch.err)
	case e.opts.WatchPolicies && !e.watch.running:
		return fmt.Sprintf("policy directory %s not watched yet", e.opts.PolicyDir)
	}
	return ""
}

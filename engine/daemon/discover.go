package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// discoverRun is what the last Discover run did.
type discoverRun struct {
	at         time.Time
	err        error
	registered int
}

// ReconcileDiscovered runs adoptDiscovered at once, then every
// DiscoverInterval until ctx ends, so a container no registrar reported (a
// registrar that was down, a node without NRI) is enforced within one
// interval. The first run follows start-up instead of being part of it:
// what is registered is enforced already, and registrars need not wait
// for a listing of the whole node.
func (e *Engine) ReconcileDiscovered(ctx context.Context) error {
	if e.opts.Discover == nil {
		<-ctx.Done()
		return nil
	}
	var tick <-chan time.Time
	if e.opts.DiscoverInterval > 0 {
		t := time.NewTicker(e.opts.DiscoverInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		if err := e.adoptDiscovered(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("reconcile with existing containers", "source", e.opts.DiscoverSource, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

// adoptDiscovered registers the containers Discover finds that no registrar
// has registered, and removes its own registrations of containers Discover
// no longer finds. A registrar's own registration (with its source, which
// its Synchronize relies on) always wins.
func (e *Engine) adoptDiscovered(ctx context.Context) (err error) {
	src := e.opts.DiscoverSource
	adopted, removed := 0, 0
	defer func() {
		e.mu.Lock()
		e.discovered.at, e.discovered.err = time.Now(), err
		e.discovered.registered = 0
		for _, c := range e.reg.List() {
			if c.Source == src {
				e.discovered.registered++
			}
		}
		e.mu.Unlock()
	}()
	found, err := e.opts.Discover(ctx, e.cgroups, func(id string) bool { return e.registeredBy(id) != "" })
	if err != nil {
		return fmt.Errorf("discover existing containers: %w", err)
	}
	running := make(map[string]bool, len(found))
	var errs []error
	for _, c := range found {
		running[c.ID] = true
		if e.registeredBy(c.ID) != "" {
			continue
		}
		c.Source = src
		if err := e.checkIdentity(ctx, &c); err != nil {
			// It may have exited since the listing.
			e.log.Info("not adopting container", "source", src, "id", c.ID, "err", err)
			continue
		}
		e.mu.Lock()
		_, known := e.reg.Get(c.ID) // a registrar may have come first meanwhile
		var regErr error
		if !known {
			_, regErr = e.registerLocked(c)
		}
		e.mu.Unlock()
		switch {
		case regErr != nil:
			errs = append(errs, regErr)
		case !known:
			adopted++
		}
	}
	e.mu.Lock()
	for _, c := range e.reg.List() {
		if c.Source != src || running[c.ID] {
			continue
		}
		gone, err := e.unregisterLocked(c.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.logUnregistered(gone)
		removed++
	}
	e.mu.Unlock()
	e.log.Info("reconciled with existing containers", "source", src, "found", len(found), "adopted", adopted, "removed", removed)
	return errors.Join(errs...)
}

// registeredBy is the source of c's registration, or "".
func (e *Engine) registeredBy(id string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.reg.Get(id); ok {
		return c.Source
	}
	return ""
}

func (e *Engine) discoverStatusLocked() *api.CRIStatus {
	if e.opts.Discover == nil {
		return nil
	}
	st := &api.CRIStatus{Endpoint: e.opts.DiscoverEndpoint, Interval: e.opts.DiscoverInterval.String(), Registered: e.discovered.registered}
	if !e.discovered.at.IsZero() {
		st.LastRun = e.discovered.at.UTC().Format(time.RFC3339)
	}
	if e.discovered.err != nil {
		st.LastErr = e.discovered.err.Error()
	}
	return st
}

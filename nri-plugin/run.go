package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	nri "github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/holdfast-dev/holdfast/engine/api/registrar"
)

// RunOptions says how to reach the runtime.
type RunOptions struct {
	// Socket is the runtime's NRI socket for an external plugin; empty means
	// NRI's default. Ignored when the runtime started the plugin itself
	// (pre-registered) and passed the connection in the environment.
	Socket string
	// Idx is the two-digit plugin index that orders plugins.
	Idx string
	// MaxBackoff caps the wait between reconnection attempts (default 5s).
	MaxBackoff time.Duration
}

// DefaultIdx orders holdfast among NRI plugins.
const DefaultIdx = "10"

// CheckIdx accepts a plugin index of two digits, the form NRI orders by.
func CheckIdx(idx string) error {
	if len(idx) != 2 || idx[0] < '0' || idx[0] > '9' || idx[1] < '0' || idx[1] > '9' {
		return fmt.Errorf("plugin index %q: want two digits", idx)
	}
	return nil
}

// PreRegistered reports whether the runtime launched this process as a
// pre-registered plugin, handing it a connected socket.
func PreRegistered() bool { return os.Getenv(nri.PluginSocketEnvVar) != "" }

// startTimeout bounds registration plus Configure and Synchronize; the stub
// waits for Configure without a deadline of its own.
const startTimeout = 30 * time.Second

// Run connects p to the runtime and serves events until ctx ends. An
// external plugin reconnects with backoff whenever the runtime goes away
// (a restarted containerd) and is synchronised again on each connection. A
// pre-registered plugin returns when its connection closes, because the
// runtime launches a fresh one when it starts.
func Run(ctx context.Context, p *Plugin, opts RunOptions) error {
	p.init()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // runs first: ends the resync loop wg.Wait waits for
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.Resync(ctx)
	}()

	maxBackoff := opts.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Second
	}
	backoff := 100 * time.Millisecond
	preRegistered := PreRegistered()
	for {
		err := serveOnce(ctx, p, opts, preRegistered)
		if ctx.Err() != nil {
			return nil
		}
		if preRegistered {
			if err == nil {
				err = errors.New("connection closed by runtime")
			}
			return fmt.Errorf("pre-registered nri plugin: %w", err)
		}
		if err == nil {
			// The connection was up: start the next attempt from scratch.
			backoff = 100 * time.Millisecond
			p.log().Warn("connection to runtime lost; reconnecting")
		} else {
			p.log().Warn("cannot connect to runtime; retrying", "err", err, "retry", backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// serveOnce makes one connection and serves it until it closes. It returns
// nil if the plugin was registered and the connection later went away.
func serveOnce(ctx context.Context, p *Plugin, opts RunOptions, preRegistered bool) error {
	var (
		connMu sync.Mutex
		conn   net.Conn
	)
	stubOpts := []stub.Option{
		stub.WithLogger(nriLogger{p.log()}),
		stub.WithDialer(func(path string) (net.Conn, error) {
			c, err := net.DialTimeout("unix", path, 5*time.Second)
			connMu.Lock()
			conn = c
			connMu.Unlock()
			return c, err
		}),
	}
	// A launching runtime passes name and index in the environment.
	if os.Getenv(nri.PluginNameEnvVar) == "" {
		stubOpts = append(stubOpts, stub.WithPluginName(Name))
	}
	if opts.Idx != "" && os.Getenv(nri.PluginIdxEnvVar) == "" {
		stubOpts = append(stubOpts, stub.WithPluginIdx(opts.Idx))
	}
	if !preRegistered && opts.Socket != "" {
		stubOpts = append(stubOpts, stub.WithSocketPath(opts.Socket))
	}
	if _, mode := p.settings(); mode == registrar.FailClosed {
		// Runtimes whose NRI knows failure policies then also fail a request
		// the plugin could not answer; older ones ignore it. The stub sends
		// it before Configure, so only the command line's mode counts here.
		stubOpts = append(stubOpts, stub.WithFailurePolicy(&nri.FailurePolicy{FailRequest: true, KeepConnected: true}))
	}
	s, err := stub.New(p, stubOpts...)
	if err != nil {
		return fmt.Errorf("create nri stub: %w", err)
	}
	p.mu.Lock()
	p.timeout = s.RequestTimeout
	p.mu.Unlock()

	started := make(chan error, 1)
	go func() { started <- s.Start(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			return fmt.Errorf("register with runtime: %w", err)
		}
	case <-time.After(startTimeout):
		connMu.Lock()
		if conn != nil {
			conn.Close()
		}
		connMu.Unlock()
		return fmt.Errorf("register with runtime: not configured within %s", startTimeout)
	case <-ctx.Done():
		connMu.Lock()
		if conn != nil {
			conn.Close()
		}
		connMu.Unlock()
		return ctx.Err()
	}
	p.log().Info("registered with runtime", "runtimeNRI", s.RuntimeNRIVersion(), "requestTimeout", s.RequestTimeout())

	done := make(chan struct{})
	go func() {
		s.Wait()
		close(done)
	}()
	select {
	case <-ctx.Done():
		s.Stop()
		<-done
		return ctx.Err()
	case <-done:
		return nil
	}
}

// nriLogger sends the stub's log lines to slog.
type nriLogger struct{ l *slog.Logger }

func (n nriLogger) Debugf(ctx context.Context, format string, args ...any) {
	n.l.DebugContext(ctx, fmt.Sprintf(format, args...))
}

func (n nriLogger) Infof(ctx context.Context, format string, args ...any) {
	n.l.InfoContext(ctx, fmt.Sprintf(format, args...))
}

func (n nriLogger) Warnf(ctx context.Context, format string, args ...any) {
	n.l.WarnContext(ctx, fmt.Sprintf(format, args...))
}

func (n nriLogger) Errorf(ctx context.Context, format string, args ...any) {
	n.l.ErrorContext(ctx, fmt.Sprintf(format, args...))
}

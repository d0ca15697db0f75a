package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/holdfast-dev/holdfast/engine/linux"
)

// Handler is what the engine implements to serve requests.
type Handler interface {
	Register(ctx context.Context, c Container) (*Container, error)
	Unregister(ctx context.Context, id string) error
	Sync(ctx context.Context, source string, cs []Container) ([]Container, error)
	List(ctx context.Context) ([]Container, error)
	Status(ctx context.Context) (*Status, error)
	// Reload re-reads the policies; on error the enforced ones stay.
	Reload(ctx context.Context) error
}

// Server serves Handler on a Unix socket to root peers only.
type Server struct {
	Handler Handler
	// Timeout bounds one connection, request to response (default 5s).
	Timeout time.Duration
	// AllowUID decides which peer uids may talk; nil allows uid 0 only.
	AllowUID func(uid uint32) bool
	Log      *slog.Logger
}

// Listen creates the socket at path with mode 0600, replacing a stale one.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir for %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	return l, nil
}

// Serve accepts connections until ctx is done or l fails.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", l.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, conn.(*net.UnixConn))
		}()
	}
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) serveConn(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn.SetDeadline(time.Now().Add(timeout))

	resp := s.handle(ctx, conn)
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		s.log().Warn("write response", "err", err)
	}
}

func (s *Server) handle(ctx context.Context, conn *net.UnixConn) *Response {
	cred, credErr := linux.PeerCred(conn)
	// Read the request even from a peer about to be refused, so the refusal
	// reaches it instead of a broken pipe.
	var req Request
	dec := json.NewDecoder(&limitedReader{r: conn, n: MaxMessageSize})
	decErr := dec.Decode(&req)

	if credErr != nil {
		return &Response{Error: fmt.Sprintf("read peer credentials: %v", credErr)}
	}
	allow := s.AllowUID
	if allow == nil {
		allow = func(uid uint32) bool { return uid == 0 }
	}
	if !allow(cred.UID) {
		s.log().Warn("refused peer", "uid", cred.UID, "pid", cred.PID)
		return &Response{Error: fmt.Sprintf("permission denied: peer uid %d (pid %d) is not root", cred.UID, cred.PID)}
	}
	if decErr != nil {
		if errors.Is(decErr, errTooLarge) {
			return &Response{Error: fmt.Sprintf("request larger than %d bytes", MaxMessageSize)}
		}
		return &Response{Error: fmt.Sprintf("malformed request: %v", decErr)}
	}
	return s.dispatch(ctx, &req)
}

func (s *Server) dispatch(ctx context.Context, req *Request) *Response {
	fail := func(err error) *Response {
		return &Response{Error: err.Error(), NotFound: errors.Is(err, ErrNotFound)}
	}
	switch req.Op {
	case OpRegister:
		if req.Container == nil {
			return &Response{Error: "register: request has no container"}
		}
		c, err := s.Handler.Register(ctx, *req.Container)
		if err != nil {
			return fail(err)
		}
		return &Response{Container: c}
	case OpUnregister:
		if req.ID == "" {
			return &Response{Error: "unregister: request has no container id"}
		}
		if err := s.Handler.Unregister(ctx, req.ID); err != nil {
			return fail(err)
		}
		return &Response{}
	case OpSync:
		if req.Source == "" {
			return &Response{Error: "sync: request has no source"}
		}
		cs, err := s.Handler.Sync(ctx, req.Source, req.Containers)
		if err != nil {
			return fail(err)
		}
		return &Response{Containers: cs}
	case OpList:
		cs, err := s.Handler.List(ctx)
		if err != nil {
			return fail(err)
		}
		return &Response{Containers: cs}
	case OpStatus:
		st, err := s.Handler.Status(ctx)
		if err != nil {
			return fail(err)
		}
		return &Response{Status: st}
	case OpReload:
		if err := s.Handler.Reload(ctx); err != nil {
			return fail(err)
		}
		return &Response{}
	default:
		return &Response{Error: fmt.Sprintf("unknown op %q", req.Op)}
	}
}

var errTooLarge = errors.New("message too large")

// limitedReader fails, rather than truncating, once more than n bytes are read.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

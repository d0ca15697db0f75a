package api

import (
	"bytes"
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

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
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

// DefaultIdleTimeout is how long a server keeps a connection that sends no
// further request.
const DefaultIdleTimeout = 30 * time.Second

// HookHandler is implemented by handlers that take OCI hook runs (OpHook).
type HookHandler interface {
	Hook(ctx context.Context, run HookRun) (HookResult, error)
}

// HookResult is what a hook run did: the container registered, or the one
// an unregister removed (nil for neither).
type HookResult struct {
	Registered, Removed *Container
}

// Explainer is implemented by handlers that can explain a container's
// rules (OpExplain); others answer that op with an error.
type Explainer interface {
	Explain(ctx context.Context, id string) (*Explanation, error)
}

// Server serves Handler on a Unix socket to root peers only.
type Server struct {
	Handler Handler
	// Timeout bounds one request, from its first byte to its response
	// (default 5s); on a new connection it counts from accept.
	Timeout time.Duration
	// IdleTimeout closes a connection that sends no further request for
	// this long (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// StreamStall drops an event subscriber whose connection took no line
	// for this long (default DefaultStreamStall); lines it misses before
	// that are dropped for it alone and counted.
	StreamStall time.Duration
	// AllowUID decides which peer uids may talk; nil allows uid 0 only.
	AllowUID func(uid uint32) bool
	Log      *slog.Logger // nil discards
}

// ErrSocketInUse: another process accepts connections on the socket path.
var ErrSocketInUse = errors.New("socket is in use by a live engine")

// Listen creates the socket at path with mode 0600, replacing a stale one:
// a socket something still accepts on is left alone (ErrSocketInUse), so a
// second engine cannot take over a live engine's socket.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir for %s: %w", path, err)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, ErrSocketInUse)
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
	return slog.New(slog.DiscardHandler)
}

func (s *Server) serveConn(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	// A hook's answer says how long each step took, the first from here.
	begun := time.Now()
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	// Shutdown ends a wait for the next request at once; a request being
	// handled sees its context cancelled and still gets its answer.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	// The peer cannot change, so its credentials are checked once.
	cred, credErr := linux.PeerCred(conn)
	refusal := s.refusal(cred, credErr)
	if credErr == nil {
		ctx = WithPeerPID(ctx, int(cred.PID))
	}
	// The first request is due at once, as on a one-shot connection.
	deadline := time.Now().Add(timeout)
	conn.SetDeadline(deadline)
	var hook *Request
	in := newJSONStream(conn)
	if refusal == nil {
		var buf *[hookLineBuffer]byte
		var head []byte
		if hook, buf, head = readHookLine(conn); hook == nil {
			in = newJSONStream(io.MultiReader(bytes.NewReader(head), conn))
		} else {
			defer lineBuffers.Put(buf)
		}
	}
	var rq request
	for first := true; ; first = false {
		if !first {
			conn.SetDeadline(time.Now().Add(idle))
		}
		// Checked after setting the deadline, so a shutdown cannot slip
		// between the check and the wait.
		if ctx.Err() != nil {
			return
		}
		var req Request
		var decErr error
		arrived := true
		if hook != nil {
			req, hook = *hook, nil
		} else {
			in.next()
			arrived = in.dec.More()
			if arrived && !first {
				deadline = time.Now().Add(timeout)
				conn.SetDeadline(deadline)
				begun = time.Now()
			}
			decErr = in.dec.Decode(&req)
		}
		if refusal == nil && !arrived && closedQuietly(decErr) {
			return
		}
		resp, keep := refusal, false
		switch {
		case refusal != nil:
			// Answered after reading the request, so the refusal reaches
			// the peer instead of a broken pipe.
		case errors.Is(decErr, errTooLarge):
			resp = &Response{Error: fmt.Sprintf("request larger than %d bytes", MaxMessageSize)}
		case decErr != nil:
			resp = &Response{Error: fmt.Sprintf("malformed request: %v", decErr)}
		case req.Op == OpSubscribe:
			s.serveEvents(ctx, conn, &req)
			return
		default:
			if req.Op == OpHook {
				rq.steps = oneshot.NewStepTimer(begun)
				rq.steps.End("request")
			}
			reqCtx, cancel := context.WithDeadline(withRequest(ctx, &rq), deadline)
			resp, keep = s.dispatch(reqCtx, &req), true
			cancel()
			if rq.steps != nil {
				resp.Steps = rq.steps.Steps()
			}
		}
		line, err := appendResponse(nil, resp)
		if err == nil {
			_, err = conn.Write(line)
		}
		rq.answered()
		if err != nil {
			s.log().Warn("write response", "err", err)
			return
		}
		// After a refusal or a bad request the stream position is unknown.
		if !keep {
			return
		}
	}
}

// hookLineBuffer is how much of a connection's first request is read at
// once: a hook's line is its OCI state and a few bytes more, and runtimes
// put every annotation in the state.
const hookLineBuffer = 32 << 10

// lineBuffers keeps the first reads' buffers, which are not zeroed again
// for every container start.
var lineBuffers = sync.Pool{New: func() any { return new([hookLineBuffer]byte) }}

// readHookLine reads what has arrived of a connection's first request. A
// hook's request, which comes alone on its connection in one line as
// oneshot.Line writes it, is returned decoded without the decoder's
// reflection, on the path every container start waits for, with the buffer
// its state is in, for lineBuffers once the request is answered. Anything
// else (or an error) returns no request and the bytes read, for the
// decoder, whose buffer is left to the collector.
func readHookLine(conn io.Reader) (*Request, *[hookLineBuffer]byte, []byte) {
	buf := lineBuffers.Get().(*[hookLineBuffer]byte)
	n, err := conn.Read(buf[:])
	if err != nil {
		return nil, nil, buf[:n]
	}
	stage, state, ok := oneshot.ParseLine(buf[:n])
	if !ok {
		return nil, nil, buf[:n]
	}
	return &Request{Op: OpHook, Hook: &HookRun{Stage: stage, State: state}}, buf, nil
}

// closedQuietly tells a peer that went away, or stayed idle, between
// requests from one that sent something broken.
func closedQuietly(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed)
}

// refusal is the answer for a peer that may not talk, or nil.
func (s *Server) refusal(cred linux.Cred, err error) *Response {
	if err != nil {
		return &Response{Error: fmt.Sprintf("read peer credentials: %v", err)}
	}
	allow := s.AllowUID
	if allow == nil {
		allow = func(uid uint32) bool { return uid == 0 }
	}
	if !allow(cred.UID) {
		s.log().Warn("refused peer", "uid", cred.UID, "pid", cred.PID)
		return &Response{Error: fmt.Sprintf("permission denied: peer uid %d (pid %d) is not root", cred.UID, cred.PID)}
	}
	return nil
}

func (s *Server) dispatch(ctx context.Context, req *Request) *Response {
	fail := func(err error) *Response {
		r := &Response{Error: err.Error(), NotFound: errors.Is(err, ErrNotFound)}
		switch {
		case r.NotFound:
			r.Code = CodeNotFound
		case errors.Is(err, ErrCannotEnforce):
			r.Code = CodeCannotEnforce
		}
		return r
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
	case OpExplain:
		x, ok := s.Handler.(Explainer)
		if !ok {
			return &Response{Error: "explain: this engine cannot explain containers"}
		}
		if req.ID == "" {
			return &Response{Error: "explain: request has no container id"}
		}
		ex, err := x.Explain(ctx, req.ID)
		if err != nil {
			return fail(err)
		}
		return &Response{Explain: ex}
	case OpHook:
		h, ok := s.Handler.(HookHandler)
		if !ok {
			return &Response{Error: "hook: this engine does not take OCI hook runs", Code: CodeUnsupported}
		}
		if req.Hook == nil {
			return &Response{Error: "hook: request has no hook run"}
		}
		res, err := h.Hook(ctx, *req.Hook)
		if err != nil {
			return fail(err)
		}
		return &Response{Container: res.Registered, Removed: res.Removed}
	case OpReload:
		if err := s.Handler.Reload(ctx); err != nil {
			return fail(err)
		}
		return &Response{}
	default:
		return &Response{Error: fmt.Sprintf("%s%q", unknownOpPrefix, req.Op), Code: CodeUnsupported}
	}
}

var errTooLarge = errors.New("message too large")

// limitedReader fails, rather than truncating, once more than n bytes are
// read, and counts the bytes it passed on.
type limitedReader struct {
	r    io.Reader
	n    int64
	read int64
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
	l.read += int64(n)
	return n, err
}

// jsonStream reads the JSON messages of one connection, bounding each
// message, not the connection, by MaxMessageSize.
type jsonStream struct {
	lr  limitedReader
	dec *json.Decoder
}

func newJSONStream(r io.Reader) *jsonStream {
	s := &jsonStream{lr: limitedReader{r: r}}
	s.dec = json.NewDecoder(&s.lr)
	return s
}

// next gives the coming message its budget; bytes the decoder already
// buffered count against it.
func (s *jsonStream) next() {
	s.lr.n = MaxMessageSize - (s.lr.read - s.dec.InputOffset())
}

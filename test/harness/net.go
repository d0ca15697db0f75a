package harness

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// ListenTCP listens on addr (e.g. "127.0.0.1:0") for the test's lifetime,
// accepting connections and closing them at once: a peer for tests of
// whether a connect(2) gets through.
func ListenTCP(t testing.TB, addr string) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on tcp %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go acceptAll(l, func(c net.Conn) { c.Close() })
	return l.Addr().(*net.TCPAddr)
}

// SilentSocket returns the path of a Unix socket that accepts connections
// and never answers, standing in for a hung engine. Cleanup closes the
// listener and every connection it accepted.
func SilentSocket(t testing.TB) string {
	t.Helper()
	// Unix socket paths are short; t.TempDir() names can be long.
	dir, err := os.MkdirTemp("", "hf-silent-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "silent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("listen on unix %s: %v", sock, err)
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	go acceptAll(l, func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close() // accepted while cleanup ran
			return
		}
		conns = append(conns, c)
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		os.RemoveAll(dir)
	})
	return sock
}

// acceptAll hands each connection l accepts to handle until l is closed.
func acceptAll(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		handle(c)
	}
}

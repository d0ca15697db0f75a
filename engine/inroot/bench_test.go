package inroot

import "testing"

// BenchmarkResolve resolves one exec rule's path in a root opened per
// registration, as the engine does for each container:
//
//	go test -run '^$' -bench Resolve ./engine/inroot/
func BenchmarkResolve(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r, err := Open("/", "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Lookup("/usr/bin/wget"); err != nil {
			b.Fatal(err)
		}
		if _, err := r.ID(); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

package main

import (
	"fmt"
	"io"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// printCRIStatus writes how cgroup claims are checked and the state of
// reconciliation with the CRI runtime.
func printCRIStatus(w io.Writer, st *api.Status) {
	if st.FileIdentity != "" {
		fmt.Fprintf(w, "file identity:\t%s\n", st.FileIdentity)
	}
	if st.CgroupCheck != "" {
		fmt.Fprintf(w, "cgroup check:\t%s\n", st.CgroupCheck)
	}
	if st.CRI == nil {
		fmt.Fprintf(w, "cri:\toff\n")
		return
	}
	last := "not yet"
	if st.CRI.LastRun != "" {
		last = st.CRI.LastRun
	}
	fmt.Fprintf(w, "cri:\t%s, every %s, last %s, %d containers registered from it\n", st.CRI.Endpoint, st.CRI.Interval, last, st.CRI.Registered)
	if st.CRI.LastErr != "" {
		fmt.Fprintf(w, "cri error:\t%s\n", st.CRI.LastErr)
	}
}

package daemon

import (
	"runtime"
	"sync"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// cgroupsGone reports which containers' cgroup paths no longer hold their
// cgroup (a container that went away while no engine watched). A restart
// checks every registration, so each check is one stat (Engine.cgroupID) and
// the checks run on every CPU, each worker on a contiguous part of cs.
func (e *Engine) cgroupsGone(cs []api.Container) []bool {
	gone := make([]bool, len(cs))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(cs)/256))
	per := (len(cs) + workers - 1) / workers
	var wg sync.WaitGroup
	for first := 0; first < len(cs); first += per {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := first; i < min(first+per, len(cs)); i++ {
				if c := cs[i]; c.CgroupPath != "" {
					id, err := e.cgroupID(c.CgroupPath)
					gone[i] = err != nil || id != c.CgroupID
				}
			}
		}()
	}
	wg.Wait()
	return gone
}

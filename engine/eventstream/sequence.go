package eventstream

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/registry"
)

// Sequence hands out line numbers that never repeat for one state dir,
// across engine restarts and crashes: it records a ceiling Batch numbers
// ahead before using any number below it, and a new engine starts above
// the recorded ceiling. A restart therefore skips up to Batch numbers.
type Sequence struct {
	path     string
	batch    uint64
	last     uint64 // last number handed out
	reserved uint64 // highest number the file allows
}

// DefaultBatch is how many numbers one write of the sequence file covers.
const DefaultBatch = 4096

// OpenSequence reads the ceiling recorded at path (none: start at 1). An
// unreadable file is reported with a Sequence that starts above the
// current time in microseconds, a floor no earlier engine can have
// reached at a sustained million lines a second.
func OpenSequence(path string, batch uint64) (*Sequence, error) {
	if batch == 0 {
		batch = DefaultBatch
	}
	q := &Sequence{path: path, batch: batch}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return q, nil
	}
	if err == nil {
		q.last, err = strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	}
	if err != nil {
		q.last = uint64(time.Now().UnixMicro())
		return q, fmt.Errorf("read event sequence %s (numbering continues above %d): %w", path, q.last, err)
	}
	q.reserved = q.last
	return q, nil
}

// Next returns the next number. An error says the new ceiling could not be
// recorded: the number is still unique unless the engine restarts before a
// later write succeeds.
func (q *Sequence) Next() (uint64, error) {
	q.last++
	if q.last <= q.reserved {
		return q.last, nil
	}
	ceiling := q.last + q.batch - 1
	if err := linux.WriteFileAtomic(q.path, []byte(strconv.FormatUint(ceiling, 10)+"\n"), registry.StatePerm); err != nil {
		return q.last, fmt.Errorf("record event sequence ceiling: %w", err)
	}
	q.reserved = ceiling
	return q.last, nil
}

package oneshot

import (
	"strconv"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/jsonenc"
	"github.com/holdfast-dev/holdfast/engine/api/jsonscan"
)

// Steps time what the engine did for a request, step by step in order,
// in microseconds: an OpHook answer carries them, so that the hook's
// decision log says where in the engine a container start waited. On the
// wire they are one object, {"request":12,"config":80,...}, in order.
type Steps []Step

// Step is one step of a request's handling in the engine.
type Step struct {
	Name string
	Us   int64
}

// StepTimer ends steps one after another, each timed from the end of the
// one before (the first from when the timer was made).
type StepTimer struct {
	last  time.Time
	steps Steps
}

// NewStepTimer starts timing at start.
func NewStepTimer(start time.Time) *StepTimer { return &StepTimer{last: start} }

// End ends the current step, named name.
func (t *StepTimer) End(name string) {
	now := time.Now()
	t.steps = append(t.steps, Step{Name: name, Us: now.Sub(t.last).Microseconds()})
	t.last = now
}

// Steps are the steps ended so far.
func (t *StepTimer) Steps() Steps { return t.steps }

// AppendJSON appends the steps as MarshalJSON writes them.
func (s Steps) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, st := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.String(b, st.Name)
		b = append(b, ':')
		b = strconv.AppendInt(b, st.Us, 10)
	}
	return append(b, '}')
}

// MarshalJSON writes the steps as one object, in order.
func (s Steps) MarshalJSON() ([]byte, error) { return s.AppendJSON(nil), nil }

// UnmarshalJSON reads an object of integers, keeping its order (a repeated
// name is kept twice); null leaves s as it is, as for any value.
func (s *Steps) UnmarshalJSON(data []byte) error {
	sc := jsonscan.New(data)
	if err := s.read(sc); err != nil {
		return err
	}
	return sc.End()
}

func (s *Steps) read(sc *jsonscan.Scanner) error {
	if sc.Null() {
		return nil
	}
	var out Steps
	err := sc.Object(func(name string) error {
		var us int
		if err := sc.Int(&us); err != nil {
			return err
		}
		out = append(out, Step{Name: name, Us: int64(us)})
		return nil
	})
	if err != nil {
		return err
	}
	*s = out
	return nil
}

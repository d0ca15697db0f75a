package hook

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWithDeadline: the timer-free context reports its deadline, ends on
// it for Err and for a waiter on Done, and shorter keeps the earlier end.
func TestWithDeadline(t *testing.T) {
	end := time.Now().Add(100 * time.Millisecond)
	ctx := WithDeadline(end)
	if d, ok := ctx.Deadline(); !ok || !d.Equal(end) {
		t.Fatalf("Deadline() = %v, %v; want %v", d, ok, end)
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err() before the deadline = %v", err)
	}
	select {
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) || time.Now().Before(end) {
			t.Fatalf("Done closed at %v with Err %v; deadline %v", time.Now(), ctx.Err(), end)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Done never closed")
	}

	for _, tt := range []struct {
		name  string
		other time.Duration
		want  time.Duration
	}{
		{"earlier engine share", time.Second, time.Second},
		{"later engine share", time.Hour, time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := time.Now()
			sub, cancel := shorter(WithDeadline(base.Add(time.Minute)), base.Add(tt.other))
			defer cancel()
			if d, _ := sub.Deadline(); !d.Equal(base.Add(tt.want)) {
				t.Fatalf("deadline %v after base, want %v", d.Sub(base), tt.want)
			}
		})
	}
}

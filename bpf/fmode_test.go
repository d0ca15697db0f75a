package bpf

import "testing"

func TestFmodeBackingOf(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    uint32
	}{
		{"5.15.0-91-generic", 0},
		{"6.4.16", 0},
		{"6.5.0-1", 1 << 25},
		{"6.12.48+deb13-amd64", 1 << 25},
		{"6.13.0", 1 << 24},
		{"6.18.44-fc-v1045", 1 << 24},
		{"7.0", 1 << 24},
	} {
		got, err := fmodeBackingOf(tc.release)
		if err != nil || got != tc.want {
			t.Errorf("fmodeBackingOf(%q) = %#x, %v; want %#x", tc.release, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "6", "x.y", "6.x"} {
		if _, err := fmodeBackingOf(bad); err == nil {
			t.Errorf("fmodeBackingOf(%q): want an error", bad)
		}
	}
}

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
)

func TestFormatEvent(t *testing.T) {
	at := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		line string
		want string
	}{
		{"ancestry chain oldest first", `{"seq":7,"time":"2026-12-02T03:04:05Z","action":"exec-killed","verdict":"deny","pid":131,"comm":"curl",
			"binary":"/usr/bin/curl","container":{"id":"c1","namespace":"shop","pod":"web-0","name":"main"},"policy":"lock","rule":"/usr/bin/curl",
			"process":{"binary":"/usr/bin/curl","pid":131,"args":["curl","--password","*****"]},
			"ancestors":[{"binary":"/bin/sh","pid":130},{"binary":"/usr/sbin/nginx","pid":123}],"redactedBy":["secrets"]}`,
			`2026-12-02T03:04:05.000Z #7 exec-killed deny shop/web-0/main policy=lock rule="/usr/bin/curl" binary=/usr/bin/curl nginx(123) → sh(130) → curl(131) args=["curl" "--password" "*****"] redactedBy=secrets`},
		{"incomplete chain", `{"seq":8,"time":"2026-12-02T03:04:05Z","action":"connect-refused","verdict":"wouldDeny","pid":9,"destination":"10.0.0.1:80","protocol":"tcp",
			"process":{"binary":"/bin/wget","pid":9},"ancestors":[{"binary":"/bin/sh","pid":5}],"ancestorsIncomplete":true}`,
			`2026-12-02T03:04:05.000Z #8 connect-refused wouldDeny dest=10.0.0.1:80/tcp … → sh(5) → wget(9)`},
		{"no process: comm and pid", `{"seq":9,"time":"2026-12-02T03:04:05Z","action":"exec-killed","pid":42,"comm":"id","cgroupId":77}`,
			`2026-12-02T03:04:05.000Z #9 exec-killed cgroup 77 id(42)`},
		{"summary", `{"seq":10,"time":"2026-12-02T03:04:05Z","summary":"connect-refused","verdict":"wouldDeny","container":{"id":"abc"},"policy":"lock","rule":"r","count":100,"events":5,"lost":0,"suppressed":95,"total":100}`,
			`2026-12-02T03:04:05.000Z #10 summary connect-refused x100 (95 suppressed) wouldDeny container abc policy=lock rule="r"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l eventLine
			if err := json.Unmarshal([]byte(tc.line), &l); err != nil {
				t.Fatal(err)
			}
			l.Time = at
			if got := formatEvent(&l); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":                  now.Add(-10 * time.Minute),
		"2026-12-01T00:00:00Z": time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", ""} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}

// replay reads the rotated backups oldest first, then the file, keeping
// lines at or after the time that pass the filter.
func TestReplay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	files := map[string]string{
		path + ".2": `{"seq":1,"time":"2026-12-02T01:00:00Z","action":"exec-killed","container":{"id":"a","namespace":"shop"}}` + "\n",
		path + ".1": `{"seq":2,"time":"2026-12-02T02:00:00Z","action":"exec-killed","container":{"id":"b","namespace":"bank"}}` + "\n" +
			`{"seq":3,"time":"2026-12-02T02:30:00Z","summary":"exec-killed","container":{"id":"a","namespace":"shop"},"count":4}` + "\n" +
			`{"seq":4,"time":"2026-12-02T02:40:00Z","acti` + "\n", // cut by a crash
		path: `{"seq":5,"time":"2026-12-02T03:00:00Z","action":"connect-refused","container":{"id":"a","namespace":"shop"}}` + "\n",
	}
	for name, data := range files {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	last, err := replay(path, time.Date(2026, 12, 2, 1, 30, 0, 0, time.UTC), 0, api.EventFilter{Namespace: "shop"}, func(_ []byte, l *eventLine) error {
		got = append(got, l.Seq)
		return nil
	})
	if err != nil || last != 5 || len(got) != 2 || got[0] != 3 || got[1] != 5 {
		t.Errorf("replay = %v, last %d, %v; want [3 5], last 5", got, last, err)
	}
}

// After a reconnect only lines numbered above the last one printed are
// replayed, whatever their time.
func TestReplayAfterSeq(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	var data string
	for seq := 1; seq <= 4; seq++ {
		data += `{"seq":` + string(rune('0'+seq)) + `,"time":"2026-12-02T01:00:00Z","action":"exec-killed"}` + "\n"
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	last, err := replay(path, time.Time{}, 2, api.EventFilter{}, func(_ []byte, l *eventLine) error {
		got = append(got, l.Seq)
		return nil
	})
	if err != nil || last != 4 || len(got) != 2 || got[0] != 3 {
		t.Errorf("replay after 2 = %v, last %d, %v; want [3 4]", got, last, err)
	}
}

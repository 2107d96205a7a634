package drill

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/understudy-db/understudy"
)

// TestScheduleNext: a drill is due Every after the last recorded one
// (one from the command line counts), never before FirstWait (or Every,
// if shorter) after start, nor before a retry.
func TestScheduleNext(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var last time.Time
	s := NewSchedule("db", 24*time.Hour, nil, func() (time.Time, bool) { return last, !last.IsZero() }, nil)
	for _, tc := range []struct {
		name          string
		last, retryAt time.Time
		every         time.Duration
		want          time.Time
	}{
		{"never drilled: after the first wait", time.Time{}, time.Time{}, 24 * time.Hour, start.Add(time.Minute)},
		{"never drilled, every 10s: after 10s", time.Time{}, time.Time{}, 10 * time.Second, start.Add(10 * time.Second)},
		{"drilled an hour ago", start.Add(-time.Hour), time.Time{}, 24 * time.Hour, start.Add(23 * time.Hour)},
		{"drilled two days ago: soon after start", start.Add(-48 * time.Hour), time.Time{}, 24 * time.Hour, start.Add(time.Minute)},
		{"a retry later than the schedule", start.Add(-48 * time.Hour), start.Add(10 * time.Minute), 24 * time.Hour, start.Add(10 * time.Minute)},
	} {
		last, s.Every = tc.last, tc.every
		if got := s.next(start, tc.retryAt); !got.Equal(tc.want) {
			t.Errorf("%s: next %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestScheduleRun: drills run every Every after the last recorded one; a
// drill that could not begin (nothing recorded) is tried again after
// Retry, not at once.
func TestScheduleRun(t *testing.T) {
	var mu sync.Mutex
	var last time.Time
	var calls []time.Time
	fail := true
	s := NewSchedule("db", 100*time.Millisecond, func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		if fail {
			fail = false
			return errors.New("no scratch server") // not recorded
		}
		last = time.Now()
		return nil
	}, func() (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		return last, !last.IsZero()
	}, nil)
	s.FirstWait, s.Retry = 10*time.Millisecond, 300*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 750*time.Millisecond)
	defer cancel()
	began := time.Now()
	s.Run(ctx)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 3 {
		t.Fatalf("%d drills in 750ms, want at least 3", len(calls))
	}
	// The retry waits min(Retry, Every) = 100ms; then every 100ms.
	if d := calls[0].Sub(began); d < 10*time.Millisecond || d > 80*time.Millisecond {
		t.Errorf("first drill after %s, want about 10ms", d)
	}
	for i := 1; i < len(calls); i++ {
		if d := calls[i].Sub(calls[i-1]); d < 95*time.Millisecond {
			t.Errorf("drill %d only %s after the one before", i, d)
		}
	}
	if len(calls) > 8 {
		t.Errorf("%d drills in 750ms every 100ms", len(calls))
	}
}

// TestMetrics: the gauges follow drill.json as it is when scraped, the
// RTO and success time survive a failed drill, and a failure is counted
// once, only when it began after the metrics were created.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, map[string]string{"db": dir})
	if n, err := testutil.GatherAndCount(reg, "understudy_drill_last_ok", "understudy_drill_failures_total"); err != nil || n != 1 {
		t.Fatalf("before any drill: %d series (%v), want only the failure counter", n, err)
	}
	old := understudy.DrillResult{Time: time.Now().Add(-time.Hour).UTC(), OK: false, Error: "old"}
	if err := save(dir, old); err != nil {
		t.Fatal(err)
	}
	ok := understudy.DrillResult{Time: time.Now().UTC(), OK: true, LoadSeconds: 2, ReplaySeconds: 1.5, RTOSeconds: 3.5}
	check := func(what string, lastOK, failures float64) {
		t.Helper()
		want := map[string]float64{"understudy_drill_last_ok": lastOK, "understudy_drill_failures_total": failures,
			"understudy_drill_rto_seconds": 3.5, "understudy_drill_last_success_timestamp_seconds": float64(ok.Time.UnixNano()) / 1e9}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, mm := range mf.GetMetric() {
				if mm.GetLabel()[0].GetValue() != "db" {
					t.Fatalf("%s: label %v", mf.GetName(), mm.GetLabel())
				}
				got[mf.GetName()] = mm.GetGauge().GetValue() + mm.GetCounter().GetValue()
			}
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", what, k, got[k], v)
			}
		}
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(m.failures); v != 0 || testutil.ToFloat64(m.lastOK) != 0 || testutil.CollectAndCount(m.lastSuccess) != 0 {
		t.Fatalf("a failed drill from before run started: %v failures counted, want 0 and last_ok 0, no last success", v)
	}
	if err := save(dir, ok); err != nil {
		t.Fatal(err)
	}
	check("after a passed drill", 1, 0)
	failed := understudy.DrillResult{Time: time.Now().UTC(), Error: "damaged"}
	if err := save(dir, failed); err != nil {
		t.Fatal(err)
	}
	check("after a failed drill", 0, 1)
	check("scraped again", 0, 1)
	m.Failed("db")
	check("after a scheduled drill that could not begin", 0, 2)
	if got := testutil.ToFloat64(m.lastRun); got != float64(failed.Time.UnixNano())/1e9 {
		t.Errorf("last run %v, want %v", got, failed.Time)
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if fi, _ := os.Stat(filepath.Join(dir, FileName)); fi.Mode().Perm() != 0o600 || !strings.Contains(string(b), `"last_success"`) {
		t.Errorf("drill.json: mode %v, %s", fi.Mode(), b)
	}
}

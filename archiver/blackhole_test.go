package archiver

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/replication"
)

// TestBlackhole: the network between understudy and the primary drops
// every packet for 20 s, without a reset, while the primary commits. The
// dead stream is noticed after about two heartbeats, and archiving is back
// within 5 s of the network's return, with every transaction archived
// exactly once. The archiver has its default tuning, as `understudy run`
// does; the heartbeat is a short one, then the default.
func TestBlackhole(t *testing.T) {
	for _, tc := range []struct {
		name string
		hb   time.Duration
	}{
		{"heartbeat 300ms", 300 * time.Millisecond},
		{"default heartbeat", 0},
	} {
		t.Run(tc.name, func(t *testing.T) { blackhole(t, tc.hb) })
	}
}

func blackhole(t *testing.T, hb time.Duration) {
	const outage, resumeWithin = 20 * time.Second, 5 * time.Second
	p := startPrimary(t)
	link := p.Proxy(t)
	src := understudy.Source{Name: "db", Host: link.Host, Port: link.Port, User: replUser, Password: replPassword, ServerID: 9100, Heartbeat: hb}
	logs := &mariadbtest.LogBuffer{}
	a := New(src, t.TempDir(), slog.New(slog.NewTextHandler(io.MultiWriter(logs, mariadbtest.TestLog{TB: t}), nil)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("archiver: %v", err)
		}
	}()
	write(t, p, 5)
	waitCaughtUp(t, p, a.Dir)

	link.Blackhole()
	began := time.Now()
	var noticed time.Duration
	for time.Since(began) < outage {
		write(t, p, 1) // straight to the primary, not through the network
		if noticed == 0 && a.Status().State != understudy.StateStreaming {
			noticed = time.Since(began)
		}
		time.Sleep(100 * time.Millisecond)
	}
	link.Restore()
	restored := time.Now()
	want, err := understudy.ParsePosition(p.GTIDBinlogPos(t))
	if err != nil {
		t.Fatal(err)
	}
	var resumed time.Duration
	for resumed == 0 {
		if ar, err := archive.Open(a.Dir); err == nil && ar.Position().ContainsPosition(want) {
			resumed = time.Since(restored)
		} else if time.Since(restored) > 2*time.Minute {
			t.Fatalf("nothing archived within 2 minutes of the network's return: %+v", a.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	period := hb
	if period == 0 {
		period = time.Second
	}
	t.Logf("heartbeat %s: dead stream noticed %s after the blackhole began; archive caught up %s after the network returned",
		period, noticed.Round(time.Millisecond), resumed.Round(time.Millisecond))
	// Noticed at replication.DeadAfter(period) of silence, seen here at a
	// 100 ms poll: a second of slack for a busy machine.
	if limit := replication.DeadAfter(period) + time.Second; noticed == 0 || noticed > limit {
		t.Errorf("dead stream noticed after %s, want within %s", noticed.Round(time.Millisecond), limit)
	}
	if resumed > resumeWithin {
		t.Errorf("archive caught up %s after the network returned, want within %s", resumed.Round(time.Millisecond), resumeWithin)
	}
	sameGTIDs(t, "after the blackhole", archived(t, a.Dir)[1], p.BinlogGTIDs(t))
	if st := a.Status(); st.State != understudy.StateStreaming {
		t.Fatalf("state %s after the network returned: %+v", st.State, st)
	}
}

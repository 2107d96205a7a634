package schedule

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/snapshot"
)

// fakeSource is an archive generation and a snapshot directory in memory.
type fakeSource struct {
	mu       sync.Mutex
	gen      int
	start    understudy.Position
	began    bool
	snaps    []snapshot.Listed
	pos      understudy.Position // what a snapshot taken now holds
	failures int                 // Take fails this many times first
	taken    chan string
}

func (f *fakeSource) snapshotter(every time.Duration) *Snapshotter {
	s := NewSnapshotter("db1", nil)
	s.Every, s.OnStart, s.Retry, s.FirstWait = every, true, 50*time.Millisecond, 0
	s.List = func() ([]snapshot.Listed, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]snapshot.Listed(nil), f.snaps...), nil
	}
	s.Generation = func() (int, understudy.Position, bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.gen, f.start, f.began
	}
	s.Take = func(ctx context.Context) (*snapshot.Manifest, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.failures > 0 {
			f.failures--
			f.taken <- "failed"
			return nil, errors.New("primary unreachable")
		}
		m := &snapshot.Manifest{ID: time.Now().Format("150405.000000000"), Position: f.pos, Started: time.Now()}
		f.snaps = append(f.snaps, snapshot.Listed{Manifest: m})
		f.taken <- m.Position.String()
		return m, nil
	}
	return s
}

func pos(t *testing.T, s string) understudy.Position {
	t.Helper()
	p, err := understudy.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func expect(t *testing.T, ch chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("took %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no snapshot taken, want %q", want)
	}
}

func expectNone(t *testing.T, ch chan string, d time.Duration) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("took %q, want none", got)
	case <-time.After(d):
	}
}

func TestBaseSnapshotWhenAGenerationBegins(t *testing.T) {
	f := &fakeSource{taken: make(chan string, 10)}
	s := f.snapshotter(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	// The archive has not begun: nothing to do.
	expectNone(t, f.taken, 200*time.Millisecond)

	// It begins (adopted at the primary's oldest position): a base
	// snapshot at once.
	f.mu.Lock()
	f.gen, f.start, f.began, f.pos = 1, pos(t, "1-1-500"), true, pos(t, "1-1-900")
	f.mu.Unlock()
	s.GenerationBegan()
	expect(t, f.taken, "1-1-900")
	expectNone(t, f.taken, 200*time.Millisecond)

	// A gap: generation 2 starts at 1-1-2000; the old snapshot does not
	// cover it. The first try fails and is retried.
	f.mu.Lock()
	f.gen, f.start, f.pos, f.failures = 2, pos(t, "1-1-2000"), pos(t, "1-1-2100"), 1
	f.mu.Unlock()
	s.GenerationBegan()
	expect(t, f.taken, "failed")
	expect(t, f.taken, "1-1-2100")
	expectNone(t, f.taken, 200*time.Millisecond)
}

func TestNoBaseSnapshotOnRestart(t *testing.T) {
	f := &fakeSource{taken: make(chan string, 10), gen: 1, start: understudy.Position{}, began: true}
	f.snaps = []snapshot.Listed{{Manifest: &snapshot.Manifest{ID: "old", Position: understudy.Position{}, Started: time.Now()}}}
	s := f.snapshotter(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	expectNone(t, f.taken, 300*time.Millisecond)
}

func TestOnStartOff(t *testing.T) {
	f := &fakeSource{taken: make(chan string, 10), gen: 1, start: understudy.Position{}, began: true}
	s := f.snapshotter(0)
	s.OnStart = false
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	expectNone(t, f.taken, 300*time.Millisecond)
}

func TestScheduledSnapshots(t *testing.T) {
	f := &fakeSource{taken: make(chan string, 10), gen: 1, began: true, pos: understudy.Position{}}
	f.snaps = []snapshot.Listed{{Manifest: &snapshot.Manifest{ID: "old", Started: time.Now()}}}
	s := f.snapshotter(300 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	go s.Run(ctx)
	expect(t, f.taken, "")
	if d := time.Since(t0); d < 250*time.Millisecond {
		t.Fatalf("scheduled snapshot after %s, want about 300ms after the newest", d)
	}
	expect(t, f.taken, "")
}

func TestPrunerKick(t *testing.T) {
	passes := make(chan struct{}, 10)
	p := NewPruner("db1", func(ctx context.Context) error { passes <- struct{}{}; return errors.New("boom") }, nil)
	p.Every = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	for i := 0; i < 2; i++ {
		select {
		case <-passes:
		case <-time.After(5 * time.Second):
			t.Fatalf("pass %d did not run", i)
		}
		p.Kick()
	}
}

// TestBaseSnapshotThatDoesNotCover: a base snapshot that still does not
// reach the generation's start (taken from a lagging replica) is not taken
// again in a loop.
func TestBaseSnapshotThatDoesNotCover(t *testing.T) {
	f := &fakeSource{taken: make(chan string, 10), gen: 1, start: pos(t, "1-1-500"), began: true, pos: pos(t, "1-1-400")}
	s := f.snapshotter(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	expect(t, f.taken, "1-1-400")
	expectNone(t, f.taken, 300*time.Millisecond)
	// A new generation gets its own base snapshot.
	f.mu.Lock()
	f.gen, f.start, f.pos = 2, pos(t, "1-1-900"), pos(t, "1-1-950")
	f.mu.Unlock()
	s.GenerationBegan()
	expect(t, f.taken, "1-1-950")
}

package lease_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/s3test"
	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/lease"
	"github.com/understudy-db/understudy/storage/local"
	"github.com/understudy-db/understudy/storage/s3"
	"github.com/understudy-db/understudy/storage/storagetest"
)

// ttl is short so that the tests are; a renewal is made every 500ms.
const ttl = 1500 * time.Millisecond

const name = "db1/lease"

func holder(host string, pid int) lease.Holder {
	return lease.Holder{Host: host, PID: pid, Version: "test", Generation: lease.NewGeneration()}
}

var prefixes atomic.Int32

func s3Backend(t *testing.T, srv *s3test.Server, endpoint string) storage.Backend {
	t.Helper()
	st := srv.Settings(fmt.Sprintf("t%d/", prefixes.Add(1)))
	if endpoint != "" {
		st.Endpoint = endpoint
	}
	b, err := s3.New(st)
	if err != nil {
		t.Fatal(err)
	}
	return storage.Stack(b, nil)
}

// both runs fn against a directory and against versitygw (with the
// standard decorators), in parallel, each with a new, empty store.
func both(t *testing.T, fn func(t *testing.T, b storage.Backend)) {
	srv := s3test.Start(t, s3test.Options{})
	t.Run("local", func(t *testing.T) {
		t.Parallel()
		b, err := local.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, b)
	})
	t.Run("s3", func(t *testing.T) {
		t.Parallel()
		fn(t, s3Backend(t, srv, ""))
	})
}

func acquire(t *testing.T, b storage.Backend, h lease.Holder) *lease.Lease {
	t.Helper()
	l, err := lease.Acquire(context.Background(), b, name, h, ttl)
	if err != nil {
		t.Fatalf("acquire for %s: %v", h, err)
	}
	return l
}

// run runs l.Run in the background; stop cancels it and returns what it
// returned, done is closed when it returns.
func run(l *lease.Lease) (stop func() error, done <-chan struct{}, result func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	var err error
	go func() { defer close(ch); err = l.Run(ctx) }()
	return func() error { cancel(); <-ch; return err }, ch, func() error { <-ch; return err }
}

// stored reads the record in the store.
func stored(t *testing.T, b storage.Backend) lease.Record {
	t.Helper()
	var r lease.Record
	if err := json.Unmarshal(storagetest.Read(t, b, name, 0, -1), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRace: of holders racing for one lease, exactly one wins; each other
// gets ErrHeld, in one line naming the winner.
func TestRace(t *testing.T) {
	both(t, func(t *testing.T, b storage.Backend) {
		for round := range 3 {
			n := 4
			holders := make([]lease.Holder, n)
			leases := make([]*lease.Lease, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				holders[i] = holder(fmt.Sprintf("host-%d", i), 4240+i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					leases[i], errs[i] = lease.Acquire(context.Background(), b, name, holders[i], ttl)
				}()
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				if err == nil {
					if winner >= 0 {
						t.Fatalf("round %d: %s and %s both acquired the lease", round, holders[winner], holders[i])
					}
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: nobody acquired the lease: %v", round, errs)
			}
			for i, err := range errs {
				if i == winner {
					continue
				}
				var he *lease.HeldError
				if !errors.Is(err, lease.ErrHeld) || !errors.As(err, &he) || !he.Record.Holder.Same(holders[winner]) {
					t.Fatalf("round %d: loser %s got %v, want ErrHeld naming %s", round, holders[i], err, holders[winner])
				}
				msg := err.Error()
				if want := fmt.Sprintf("on host-%d (pid %d)", winner, 4240+winner); !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
					t.Fatalf("round %d: error %q: want one line with %q", round, msg, want)
				}
				if he.In <= 0 || he.In > ttl+ttl/6 {
					t.Fatalf("round %d: can be taken over in %v, want within ttl+ttl/6", round, he.In)
				}
			}
			if got := stored(t, b); !got.Holder.Same(holders[winner]) || got.Released {
				t.Fatalf("round %d: stored record %+v, want the winner's", round, got)
			}
			if err := leases[winner].Release(context.Background()); err != nil {
				t.Fatal(err)
			}
			if round == 0 {
				t.Logf("the loser's error: %v", errs[(winner+1)%n])
			}
		}
	})
}

// TestSameHolder: the holder acquiring again renews its own lease, keeping
// when it took it; a restart of the same process (same host and pid, a new
// generation) is another holder.
func TestSameHolder(t *testing.T) {
	both(t, func(t *testing.T, b storage.Backend) {
		h := holder("host-a", 100)
		l := acquire(t, b, h)
		since := l.Record().Since
		time.Sleep(20 * time.Millisecond)
		l2 := acquire(t, b, h)
		if got := l2.Record(); !got.Since.Equal(since) || !got.Renewed.After(since) {
			t.Fatalf("acquired again: %+v, want since %v and renewed later", got, since)
		}
		if err := l2.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		restarted := h
		restarted.Generation = lease.NewGeneration()
		if _, err := lease.Acquire(context.Background(), b, name, restarted, ttl); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("a restarted process (new generation): %v, want ErrHeld", err)
		}
		if l2.Generation() != h.Generation {
			t.Fatalf("generation %q, want %q", l2.Generation(), h.Generation)
		}
	})
}

// TestRenewals: Run keeps the lease across several TTLs while another
// holder is refused; Release lets the other take it at once, and Run
// returns nil.
func TestRenewals(t *testing.T) {
	both(t, func(t *testing.T, b storage.Backend) {
		a := acquire(t, b, holder("host-a", 1))
		first := a.Record()
		_, _, result := run(a)
		bh := holder("host-b", 2)
		for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(ttl / 4) {
			if _, err := lease.Acquire(context.Background(), b, name, bh, ttl); !errors.Is(err, lease.ErrHeld) {
				t.Fatalf("host-b while host-a renews: %v, want ErrHeld", err)
			}
			if err := a.Check(context.Background()); err != nil {
				t.Fatalf("check while renewed: %v", err)
			}
		}
		got := stored(t, b)
		if !got.Holder.Same(a.Record().Holder) || got.Renewed.Sub(first.Renewed) < 2*ttl || !got.Since.Equal(first.Since) {
			t.Fatalf("after 3 TTLs the record is %+v, first written %+v: want renewed more than 2 TTLs later", got, first)
		}
		if a.Context().Err() != nil {
			t.Fatalf("lease context ended while renewed: %v", context.Cause(a.Context()))
		}

		if err := a.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := result(); err != nil {
			t.Fatalf("Run after Release: %v, want nil", err)
		}
		if cause := context.Cause(a.Context()); !errors.Is(cause, lease.ErrReleased) {
			t.Fatalf("lease context after Release: %v, want ErrReleased", cause)
		}
		if err := a.Check(context.Background()); !errors.Is(err, lease.ErrReleased) {
			t.Fatalf("check after Release: %v, want ErrReleased", err)
		}
		began := time.Now()
		l := acquire(t, b, bh)
		if d := time.Since(began); d > ttl/3 {
			t.Fatalf("acquiring a released lease took %v", d)
		}
		if err := l.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCrash: a holder whose renewals stop without Release (its Run
// cancelled, as in a crash) stops writing by its deadline, and is taken
// over after its record's expiry plus the margin, not before.
func TestCrash(t *testing.T) {
	both(t, func(t *testing.T, b storage.Backend) {
		a := acquire(t, b, holder("host-a", 1))
		stop, _, _ := run(a)
		time.Sleep(ttl / 2) // one renewal
		if err := stop(); err != nil {
			t.Fatalf("Run cancelled: %v, want nil", err)
		}
		last := stored(t, b)
		if !last.Holder.Same(a.Record().Holder) || !last.Renewed.Equal(a.Record().Renewed) {
			t.Fatalf("stored %+v, want host-a's last renewal %+v", last, a.Record())
		}
		takeable := last.Expires.Add(ttl / 6)

		var aDone atomic.Int64 // when host-a's lease context ended
		go func() { <-a.Context().Done(); aDone.Store(time.Now().UnixNano()) }()
		bh := holder("host-b", 2)
		var l *lease.Lease
		refused := 0
		for {
			var err error
			l, err = lease.Acquire(context.Background(), b, name, bh, ttl)
			if err == nil {
				// It decided to take over before it wrote the record.
				if decided := l.Record().Renewed; decided.Before(takeable.Add(-time.Millisecond)) {
					t.Fatalf("host-b took the lease at %v, before %v (expiry %v + ttl/6)", decided, takeable, last.Expires)
				}
				break
			}
			if !errors.Is(err, lease.ErrHeld) {
				t.Fatal(err)
			}
			if time.Now().After(takeable.Add(time.Second)) {
				t.Fatalf("host-b still refused a second after the lease could be taken over: %v", err)
			}
			refused++
			time.Sleep(50 * time.Millisecond)
		}
		took := time.Now()
		if refused == 0 {
			t.Fatalf("host-b was never refused")
		}
		d := aDone.Load()
		if d == 0 || time.Unix(0, d).After(took) || time.Unix(0, d).After(last.Expires) {
			t.Fatalf("host-a's lease context ended at %v; host-b took over at %v, the record expired at %v: want host-a stopped before both", time.Unix(0, d), took, last.Expires)
		}
		if cause := context.Cause(a.Context()); !errors.Is(cause, lease.ErrExpired) {
			t.Fatalf("host-a's lease context: %v, want ErrExpired", cause)
		}
		if err := a.Check(context.Background()); err == nil {
			t.Fatalf("host-a's check passed after host-b took over")
		}
		if err := l.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		// host-a's late Release leaves host-b's lease alone.
		if err := a.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := stored(t, b); !got.Holder.Same(bh) || got.Released {
			t.Fatalf("after host-a's late release: %+v, want host-b's", got)
		}
		t.Logf("refused %d times; taken over %v after the record's expiry", refused, took.Sub(last.Expires).Round(time.Millisecond))
	})
}

// TestLost: a holder whose record another replaced (an operator removed
// it and another took it) fails its Check at once, and its Run returns
// ErrLost naming the new holder at the next renewal.
func TestLost(t *testing.T) {
	both(t, func(t *testing.T, b storage.Backend) {
		a := acquire(t, b, holder("host-a", 1))
		_, done, result := run(a)
		if err := b.Delete(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		l := acquire(t, b, holder("host-b", 2))
		began := time.Now()
		if err := a.Check(context.Background()); !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), "host-b (pid 2)") {
			t.Fatalf("host-a's check after host-b took over: %v, want ErrLost naming host-b", err)
		}
		select {
		case <-done:
		case <-time.After(ttl):
			t.Fatalf("host-a's Run still runs %v after it lost the lease", ttl)
		}
		if err := result(); !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), "host-b") {
			t.Fatalf("host-a's Run: %v, want ErrLost naming host-b", err)
		}
		t.Logf("host-a's Run returned after %v: %v", time.Since(began).Round(time.Millisecond), result())

		// Without a Check: Run finds out at its next renewal.
		_, doneB, resultB := run(l)
		if err := b.Delete(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		c := acquire(t, b, holder("host-c", 3))
		select {
		case <-doneB:
		case <-time.After(ttl):
			t.Fatalf("host-b's Run still runs %v after it lost the lease", ttl)
		}
		if err := resultB(); !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), "host-c (pid 3)") {
			t.Fatalf("host-b's Run: %v, want ErrLost naming host-c", err)
		}
		if err := l.Check(context.Background()); !errors.Is(err, lease.ErrLost) {
			t.Fatalf("host-b's check: %v, want ErrLost", err)
		}
		if err := c.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestUnreachable: while the store hangs (versitygw stopped with SIGSTOP),
// Run cannot renew, and returns ErrExpired before the record it last
// wrote expires, so that the holder has stopped before another may take
// over. (A directory cannot be made unreachable: S3 only.)
func TestUnreachable(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	b := s3Backend(t, srv, "")
	a := acquire(t, b, holder("host-a", 1))
	_, done, result := run(a)
	time.Sleep(ttl / 2)
	srv.Pause(t)
	paused := time.Now()
	select {
	case <-done:
	case <-time.After(2 * ttl):
		srv.Resume(t)
		t.Fatalf("Run still runs %v after the store stopped answering", 2*ttl)
	}
	returned := time.Now()
	srv.Resume(t)
	last := a.Record()
	if err := result(); !errors.Is(err, lease.ErrExpired) {
		t.Fatalf("Run while the store hangs: %v, want ErrExpired", err)
	}
	if !returned.Before(last.Expires) {
		t.Fatalf("Run returned at %v, after its record expired at %v", returned, last.Expires)
	}
	if a.Context().Err() == nil {
		t.Fatal("the lease context did not end")
	}
	if err := a.Check(context.Background()); !errors.Is(err, lease.ErrExpired) {
		t.Fatalf("check after expiry: %v, want ErrExpired", err)
	}
	t.Logf("Run returned %v after the store stopped, %v before the record expired: %v",
		returned.Sub(paused).Round(time.Millisecond), last.Expires.Sub(returned).Round(time.Millisecond), result())
}

// TestUncertain: a write of the lease whose reply is lost (a proxy drops
// it; the Retry decorator's next attempt finds the object changed, with
// ErrUncertain) is recognized as the holder's own, in Acquire and in a
// renewal.
func TestUncertain(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	p := s3test.StartDropProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	b := s3Backend(t, srv, "http://"+p.Addr())

	h := holder("host-a", 1)
	p.Drop.Store(true)
	a := acquire(t, b, h)
	if p.Drop.Load() {
		t.Fatal("no reply was dropped")
	}
	if got := stored(t, b); !got.Holder.Same(h) {
		t.Fatalf("stored %+v, want host-a's", got)
	}
	_, done, _ := run(a)
	renewed := a.Record().Renewed
	p.Drop.Store(true) // the next renewal's reply
	time.Sleep(ttl)
	if p.Drop.Load() {
		t.Fatal("no reply was dropped")
	}
	select {
	case <-done:
		t.Fatalf("Run returned: %v", context.Cause(a.Context()))
	default:
	}
	if err := a.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := a.Record(); !got.Renewed.After(renewed) {
		t.Fatalf("not renewed since %v: %+v", renewed, got)
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, b); !got.Released {
		t.Fatalf("stored %+v after release, want released", got)
	}
}

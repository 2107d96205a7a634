package storage_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/storagetest"
)

// counting is a real store that counts the calls made to it and how many
// run at once (a Get runs until its reader is closed).
type counting struct {
	storage.Backend
	calls, now, peak atomic.Int32
}

func (c *counting) enter() func() {
	c.calls.Add(1)
	n := c.now.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return func() { c.now.Add(-1) }
}

func (c *counting) Put(ctx context.Context, name string, r io.ReaderAt, size int64) (storage.Info, error) {
	defer c.enter()()
	time.Sleep(5 * time.Millisecond) // long enough for the others to pile up
	return c.Backend.Put(ctx, name, r, size)
}

func (c *counting) Stat(ctx context.Context, name string) (storage.Info, error) {
	defer c.enter()()
	return c.Backend.Stat(ctx, name)
}

type countedReader struct {
	io.ReadCloser
	once *sync.Once
	done func()
}

func (r countedReader) Close() error { r.once.Do(r.done); return r.ReadCloser.Close() }

func (c *counting) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	done := c.enter()
	rc, err := c.Backend.Get(ctx, name, off, length)
	if err != nil {
		done()
		return nil, err
	}
	return countedReader{rc, new(sync.Once), done}, nil
}

// TestLimit: at most N operations at once, a Get until its reader is
// closed; waiting ends with the caller's context.
func TestLimit(t *testing.T) {
	c := &counting{Backend: openLocal(t)}
	b := storage.NewLimit(c, 3)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "x/" + strings.Repeat("a", i+1)
			if _, err := b.Put(context.Background(), name, strings.NewReader("data"), 4); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if p := c.peak.Load(); p != 3 {
		t.Fatalf("%d puts ran at once, want 3 (the limit, reached)", p)
	}
	var readers []io.ReadCloser
	for range 3 {
		rc, err := b.Get(context.Background(), "x/a", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, rc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.Stat(ctx, "x/a"); !errors.Is(err, context.DeadlineExceeded) || storage.IsRetryable(err) {
		t.Fatalf("stat while 3 readers are open: %v, want to wait until the context ends", err)
	}
	readers[0].Close()
	readers[0].Close() // twice frees one slot only
	if _, err := b.Stat(context.Background(), "x/a"); err != nil {
		t.Fatal(err)
	}
	if n := c.now.Load(); n != 2 {
		t.Fatalf("%d operations still counted, want the 2 open readers", n)
	}
	for _, rc := range readers[1:] {
		rc.Close()
	}
}

// TestRetryPermanent: a permanent error is returned at once, after one
// call, as it is.
func TestRetryPermanent(t *testing.T) {
	c := &counting{Backend: openLocal(t)}
	b := storage.NewRetry(c, nil)
	storagetest.Put(t, b, "a", []byte("x"))
	c.calls.Store(0)
	_, err := b.Stat(context.Background(), "nope")
	if !storage.IsNotExist(err) || c.calls.Load() != 1 {
		t.Fatalf("stat of a missing object: %v after %d calls, want ErrNotExist after 1", err, c.calls.Load())
	}
	var se *storage.Error
	if !errors.As(err, &se) || se.Op != "stat" || !strings.HasSuffix(se.Where, "/nope") {
		t.Fatalf("error %#v does not say what and where", err)
	}
	// fn's own error stops a listing and comes back as it is, never retried.
	stop := errors.New("stop")
	if err := b.List(context.Background(), "", func(storage.Info) error { return stop }); err != stop {
		t.Fatalf("list: %v, want fn's error", err)
	}
}

// TestIsRetryable: the classification by cause.
func TestIsRetryable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{storage.ErrUnavailable, true},
		{&storage.Error{Op: "get", Where: "x", Err: storage.ErrTimeout}, true},
		{io.ErrUnexpectedEOF, true},
		{storage.ErrNotExist, false},
		{errors.Join(storage.ErrUnavailable, storage.ErrCorrupt), false}, // a permanent cause wins
		{context.Canceled, false},
		{&storage.DataError{Err: errors.New("short")}, false},
		{&storage.DataError{Err: storage.ErrUnavailable}, true},
		{errors.New("something else"), false},
	} {
		if got := storage.IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

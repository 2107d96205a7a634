package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Timeout is a decorator that cancels an operation of the store that makes
// no progress for D, with ErrTimeout (which is retryable). Progress is
// what the store does, not the caller: a Put's data being read, a Get's
// reader returning bytes, a List passing a name. The time the caller takes
// between two reads of a Get, or inside List's fn, does not count. So a
// transfer of any size goes on as long as it moves, and a store that
// hangs (a dead connection, a stopped server) is given up after D.
type Timeout struct {
	next Backend
	// D is how long an operation may make no progress (default 1m).
	D time.Duration
}

var _ Backend = (*Timeout)(nil)

// DefaultTimeout is Timeout.D by default.
const DefaultTimeout = time.Minute

// NewTimeout wraps b with a timeout of d (DefaultTimeout if 0).
func NewTimeout(b Backend, d time.Duration) *Timeout {
	if d <= 0 {
		d = DefaultTimeout
	}
	return &Timeout{next: b, D: d}
}

var errStalled = errors.New("stalled")

// watchdog cancels its context when it is not kicked for d while running.
type watchdog struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	t      *time.Timer
	d      time.Duration
}

func (t *Timeout) watch(ctx context.Context) *watchdog {
	cctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{ctx: cctx, cancel: cancel, d: t.D}
	w.t = time.AfterFunc(t.D, func() { cancel(errStalled) })
	return w
}

// kick restarts the countdown; pause stops it until the next kick.
func (w *watchdog) kick()  { w.t.Reset(w.d) }
func (w *watchdog) pause() { w.t.Stop() }

func (w *watchdog) stop() {
	w.t.Stop()
	w.cancel(nil)
}

// fail turns the error of an operation that the watchdog cancelled into
// ErrTimeout.
func (w *watchdog) fail(err error) error {
	if err == nil || !errors.Is(context.Cause(w.ctx), errStalled) {
		return err
	}
	var e *Error
	msg := fmt.Errorf("%w for %s", ErrTimeout, w.d)
	if errors.As(err, &e) {
		return &Error{Op: e.Op, Where: e.Where, Err: msg}
	}
	return fmt.Errorf("%w: %v", msg, err)
}

// kickReaderAt kicks a watchdog whenever data is read.
type kickReaderAt struct {
	r io.ReaderAt
	w *watchdog
}

func (k kickReaderAt) ReadAt(p []byte, off int64) (int, error) {
	k.w.kick()
	n, err := k.r.ReadAt(p, off)
	k.w.kick()
	return n, err
}

func (t *Timeout) write(ctx context.Context, data io.ReaderAt, fn func(context.Context, io.ReaderAt) (Info, error)) (Info, error) {
	w := t.watch(ctx)
	defer w.stop()
	info, err := fn(w.ctx, kickReaderAt{data, w})
	return info, w.fail(err)
}

// Put implements Backend.
func (t *Timeout) Put(ctx context.Context, name string, data io.ReaderAt, size int64) (Info, error) {
	return t.write(ctx, data, func(ctx context.Context, r io.ReaderAt) (Info, error) {
		return t.next.Put(ctx, name, r, size)
	})
}

// PutIfAbsent implements Backend.
func (t *Timeout) PutIfAbsent(ctx context.Context, name string, data io.ReaderAt, size int64) (Info, error) {
	return t.write(ctx, data, func(ctx context.Context, r io.ReaderAt) (Info, error) {
		return t.next.PutIfAbsent(ctx, name, r, size)
	})
}

// ReplaceIf implements Backend.
func (t *Timeout) ReplaceIf(ctx context.Context, name string, data io.ReaderAt, size int64, etag string) (Info, error) {
	return t.write(ctx, data, func(ctx context.Context, r io.ReaderAt) (Info, error) {
		return t.next.ReplaceIf(ctx, name, r, size, etag)
	})
}

// Stat implements Backend.
func (t *Timeout) Stat(ctx context.Context, name string) (Info, error) {
	w := t.watch(ctx)
	defer w.stop()
	info, err := t.next.Stat(w.ctx, name)
	return info, w.fail(err)
}

// Delete implements Backend.
func (t *Timeout) Delete(ctx context.Context, name string) error {
	w := t.watch(ctx)
	defer w.stop()
	return w.fail(t.next.Delete(w.ctx, name))
}

// List implements Backend.
func (t *Timeout) List(ctx context.Context, prefix string, fn func(Info) error) error {
	w := t.watch(ctx)
	defer w.stop()
	var fnErr error
	err := t.next.List(w.ctx, prefix, func(info Info) error {
		w.pause()
		defer w.kick()
		fnErr = fn(info)
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	return w.fail(err)
}

// Get implements Backend. The watchdog runs while the object is opened and
// while a Read waits for the store.
func (t *Timeout) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	w := t.watch(ctx)
	rc, err := t.next.Get(w.ctx, name, off, length)
	if err != nil {
		w.stop()
		return nil, w.fail(err)
	}
	w.pause()
	return &timedReader{rc: rc, w: w}, nil
}

type timedReader struct {
	rc io.ReadCloser
	w  *watchdog
}

func (r *timedReader) Read(p []byte) (int, error) {
	r.w.kick()
	n, err := r.rc.Read(p)
	r.w.pause()
	if err != nil && err != io.EOF {
		err = r.w.fail(err)
	}
	return n, err
}

func (r *timedReader) Close() error {
	err := r.rc.Close()
	r.w.stop()
	return err
}

// Where implements Locator.
func (t *Timeout) Where(name string) string { return where(t.next, name) }

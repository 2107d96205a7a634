package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Retry is a decorator that makes a call again when it fails with a
// retryable error (IsRetryable), after a delay that doubles from MinDelay
// up to MaxDelay (with jitter), until the call succeeds, fails with a
// permanent error, the caller's context ends, or MaxElapsed has passed
// since the first attempt.
//
//   - Put, PutIfAbsent and ReplaceIf read their data again for each attempt.
//     A conditional write that fails with ErrExists or ErrPrecondition after
//     an attempt whose reply was lost also matches ErrUncertain.
//   - Get retries opening the object, and a reader that fails in the middle
//     reopens the object where it stopped (objects are immutable). It gives
//     up after 5 reopenings in a row that read nothing.
//   - List lists again after a failure and skips the names it has already
//     passed to fn; an error of fn is never retried.
type Retry struct {
	next Backend
	// MinDelay is the first wait (default 100ms), MaxDelay the longest
	// (default 5s), MaxElapsed the longest time spent on one call before
	// giving up (default 1m).
	MinDelay, MaxDelay, MaxElapsed time.Duration
	// Log gets a warning for each failed attempt that is retried; nil logs
	// nothing.
	Log *slog.Logger
}

var _ Backend = (*Retry)(nil)

// NewRetry wraps b with retries, with the default delays.
func NewRetry(b Backend, log *slog.Logger) *Retry {
	return &Retry{next: b, MinDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second, MaxElapsed: time.Minute, Log: log}
}

// attempt is the outcome of do.
type attempt struct {
	n         int
	uncertain bool // an attempt failed after its request may have been carried out
}

// do runs fn until it succeeds or must give up.
func (r *Retry) do(ctx context.Context, op, name string, fn func() error) (attempt, error) {
	start := time.Now()
	delay := r.MinDelay
	var a attempt
	for {
		a.n++
		err := fn()
		if err == nil || !IsRetryable(err) || ctx.Err() != nil {
			return a, err
		}
		if !notSent(err) {
			a.uncertain = true
		}
		wait := time.Duration(float64(delay) * (0.5 + rand.Float64()))
		if elapsed := time.Since(start); elapsed+wait > r.MaxElapsed {
			return a, annotate(err, fmt.Sprintf("gave up after %d attempts in %s", a.n, elapsed.Round(time.Millisecond)))
		}
		if r.Log != nil {
			r.Log.Warn("storage operation failed; retrying", "op", op, "name", name, "attempt", a.n, "retry_in", wait.Round(time.Millisecond), "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return a, stopped(err, context.Cause(ctx))
		case <-t.C:
		}
		delay = min(2*delay, r.MaxDelay)
	}
}

// annotate adds a note to an error, keeping its *Error form.
func annotate(err error, note string) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Op: e.Op, Where: e.Where, Err: fmt.Errorf("%w (%s)", e.Err, note)}
	}
	return fmt.Errorf("%w (%s)", err, note)
}

// stopped adds to the error of the last attempt the cause that stopped the
// retries (the caller's context ended).
func stopped(err, cause error) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Op: e.Op, Where: e.Where, Err: fmt.Errorf("%w (then %w)", e.Err, cause)}
	}
	return fmt.Errorf("%w (then %w)", err, cause)
}

// conditional adds ErrUncertain to the conflict error of a conditional
// write when an earlier attempt may have been carried out.
func conditional(a attempt, err error) error {
	if !a.uncertain || a.n < 2 || !(errors.Is(err, ErrExists) || errors.Is(err, ErrPrecondition)) {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return &Error{Op: e.Op, Where: e.Where, Err: fmt.Errorf("%w; %w", e.Err, ErrUncertain)}
	}
	return fmt.Errorf("%w; %w", err, ErrUncertain)
}

// Put implements Backend.
func (r *Retry) Put(ctx context.Context, name string, data io.ReaderAt, size int64) (info Info, err error) {
	_, err = r.do(ctx, "put", name, func() error {
		info, err = r.next.Put(ctx, name, data, size)
		return err
	})
	return info, err
}

// PutIfAbsent implements Backend.
func (r *Retry) PutIfAbsent(ctx context.Context, name string, data io.ReaderAt, size int64) (info Info, err error) {
	a, err := r.do(ctx, "put-if-absent", name, func() error {
		info, err = r.next.PutIfAbsent(ctx, name, data, size)
		return err
	})
	return info, conditional(a, err)
}

// ReplaceIf implements Backend.
func (r *Retry) ReplaceIf(ctx context.Context, name string, data io.ReaderAt, size int64, etag string) (info Info, err error) {
	a, err := r.do(ctx, "replace-if", name, func() error {
		info, err = r.next.ReplaceIf(ctx, name, data, size, etag)
		return err
	})
	return info, conditional(a, err)
}

// Stat implements Backend.
func (r *Retry) Stat(ctx context.Context, name string) (info Info, err error) {
	_, err = r.do(ctx, "stat", name, func() error {
		info, err = r.next.Stat(ctx, name)
		return err
	})
	return info, err
}

// Delete implements Backend.
func (r *Retry) Delete(ctx context.Context, name string) error {
	_, err := r.do(ctx, "delete", name, func() error { return r.next.Delete(ctx, name) })
	return err
}

// fnError carries an error of List's fn through do, which must not retry
// it.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// List implements Backend.
func (r *Retry) List(ctx context.Context, prefix string, fn func(Info) error) error {
	var last string
	started := false
	_, err := r.do(ctx, "list", prefix, func() error {
		return r.next.List(ctx, prefix, func(info Info) error {
			if started && info.Name <= last {
				return nil // passed to fn before the failure
			}
			if err := fn(info); err != nil {
				return fnError{err}
			}
			last, started = info.Name, true
			return nil
		})
	})
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	return err
}

// Get implements Backend.
func (r *Retry) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	_, err := r.do(ctx, "get", name, func() (err error) {
		rc, err = r.next.Get(ctx, name, off, length)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &resumingReader{r: r, ctx: ctx, name: name, off: off, left: length, rc: rc}, nil
}

// resumingReader reads an object and reopens it where it stopped after a
// retryable error.
type resumingReader struct {
	r         *Retry
	ctx       context.Context
	name      string
	off       int64 // offset of the next byte
	left      int64 // bytes still to read; negative: up to the end
	rc        io.ReadCloser
	err       error // the error that ended reading
	fruitless int   // reopenings in a row that read nothing
}

func (z *resumingReader) Read(p []byte) (int, error) {
	for {
		if z.err != nil {
			return 0, z.err
		}
		n, err := z.rc.Read(p)
		z.off += int64(n)
		if z.left >= 0 {
			z.left -= int64(n)
		}
		if n > 0 {
			z.fruitless = 0
		}
		if err == nil || err == io.EOF || !IsRetryable(err) || z.ctx.Err() != nil || z.fruitless >= 5 || z.left == 0 {
			if err != nil && err != io.EOF && z.left == 0 {
				err = io.EOF // everything asked for has arrived
			}
			return n, err
		}
		z.fruitless++
		if z.r.Log != nil {
			z.r.Log.Warn("storage read failed; reopening", "name", z.name, "offset", z.off, "err", err)
		}
		z.rc.Close()
		z.rc = nil
		var rc io.ReadCloser
		if _, oerr := z.r.do(z.ctx, "get", z.name, func() (oerr error) {
			rc, oerr = z.r.next.Get(z.ctx, z.name, z.off, z.left)
			return oerr
		}); oerr != nil {
			z.err = oerr
			return n, oerr
		}
		z.rc = rc
		if n > 0 {
			return n, nil
		}
	}
}

func (z *resumingReader) Close() error {
	z.err = errors.New("read after close")
	if z.rc == nil {
		return nil
	}
	err := z.rc.Close()
	z.rc = nil
	return err
}

// Where implements Locator.
func (r *Retry) Where(name string) string { return where(r.next, name) }

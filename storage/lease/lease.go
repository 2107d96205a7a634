// Package lease makes one process at a time the writer of a source's
// objects in a store: the holder of a lease object, which it takes with a
// conditional write (storage.Backend.PutIfAbsent, or ReplaceIf on an
// expired lease's ETag), renews with ReplaceIf on the ETag it last wrote,
// and releases with ReplaceIf too (a Backend has no conditional delete).
//
// A lease alone does not stop two writers: a holder that stalls (a paused
// VM, a store it cannot reach) may still write after another has taken
// over. So the holder stops writing by its own deadline, before anyone may
// take over, and checks the lease (Check) right before each commit-point
// write, with Context() cancelled the moment the lease is lost or
// expires. docs/storage.md ("Single writer") describes the record, the
// timings, clock skew and fencing.
//
// Glossary:
//
//   - Holder: who holds a lease: host name, process id, understudy
//     version, and a random generation made anew by each process
//     (NewHolder), so that a restarted process is a new holder.
//   - Record: the lease object's JSON content.
//   - TTL: how long a record stays valid after it is written; renewed every
//     TTL/3.
//   - Margin: TTL/6. The holder stops TTL-Margin after it sent its last
//     successful renewal (by its own monotonic clock); another may take
//     over only Margin after the record's expiry (by its own wall clock).
package lease

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/understudy-db/understudy/storage"
)

// DefaultTTL is the lease time to live that understudy uses: generous,
// so that a store that is slow for a few seconds does not stop archiving,
// and hosts' clocks may disagree by up to DefaultTTL/3 (10s).
const DefaultTTL = 30 * time.Second

// Format is the version of the record's format.
const Format = 1

// Errors of a lease; test them with errors.Is.
var (
	// ErrHeld: Acquire found the lease held by another holder, not
	// expired. The error is a *HeldError.
	ErrHeld = errors.New("lease held by another")
	// ErrLost: another holder took the lease (the record changed under
	// its holder): stop writing at once.
	ErrLost = errors.New("lease lost")
	// ErrExpired: the lease could not be renewed before its holder's
	// deadline (the store was unreachable or too slow): stop writing; by
	// the time others may take over, this holder has stopped.
	ErrExpired = errors.New("lease expired before it could be renewed")
	// ErrReleased: the lease was released by its holder (Release).
	ErrReleased = errors.New("lease released")
)

// Holder identifies a lease's holder.
type Holder struct {
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// Version is understudy's version, for the operator's information.
	Version string `json:"version,omitempty"`
	// Generation is random, made anew by each process: a record is this
	// holder's only if host, pid and generation are all equal.
	Generation string `json:"generation"`
}

// NewHolder describes this process, with a new random generation.
func NewHolder(version string) (Holder, error) {
	host, err := os.Hostname()
	if err != nil {
		return Holder{}, fmt.Errorf("lease: host name: %w", err)
	}
	return Holder{Host: host, PID: os.Getpid(), Version: version, Generation: NewGeneration()}, nil
}

// NewGeneration returns 16 random hex digits.
func NewGeneration() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// Same tells whether h and o are the same holder.
func (h Holder) Same(o Holder) bool {
	return h.Host == o.Host && h.PID == o.PID && h.Generation == o.Generation
}

// String is "understudy VERSION on HOST (pid PID)".
func (h Holder) String() string {
	s := "understudy"
	if h.Version != "" {
		s += " " + h.Version
	}
	return fmt.Sprintf("%s on %s (pid %d)", s, h.Host, h.PID)
}

// Record is the content of a lease object, as JSON. Times are UTC, by the
// clock of the host that wrote the record.
type Record struct {
	Format int `json:"format"`
	Holder
	// Since is when the holder took the lease; Renewed when it wrote this
	// record; Expires is Renewed plus TTL.
	Since   time.Time `json:"since"`
	Renewed time.Time `json:"renewed"`
	Expires time.Time `json:"expires"`
	// TTLMillis is the holder's TTL in milliseconds: others allow a margin
	// of TTL/6 past Expires for clock skew.
	TTLMillis int64 `json:"ttl_ms"`
	// Released says the holder gave the lease up: anyone may take it.
	Released bool `json:"released,omitempty"`
}

// TTL returns the record's TTL.
func (r Record) TTL() time.Duration { return time.Duration(r.TTLMillis) * time.Millisecond }

// Free tells whether another holder may take the lease at now: it was
// released, or it expired more than TTL/6 ago.
func (r Record) Free(now time.Time) bool {
	return r.Released || !now.Before(r.takeable())
}

func (r Record) takeable() time.Time { return r.Expires.Add(margin(r.TTL())) }

// margin is both the holder's safety margin (it stops that long before its
// record expires) and the others' allowance for clock skew (they wait that
// long past its expiry).
func margin(ttl time.Duration) time.Duration { return ttl / 6 }

func (r Record) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a struct of strings, numbers and times
	}
	return append(b, '\n')
}

func decode(where string, data []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil || r.Format == 0 || r.Generation == "" {
		why := "no format or generation"
		if err != nil {
			why = err.Error()
		}
		return Record{}, fmt.Errorf("%s is not a lease record (%s): remove it if no understudy runs for this source", where, why)
	}
	if r.Format > Format {
		return Record{}, fmt.Errorf("%s has lease format %d, written by a newer understudy (this one reads format %d)", where, r.Format, Format)
	}
	return r, nil
}

// HeldError is the error of Acquire when another holds the lease.
type HeldError struct {
	// Where is the lease object, as storage.Where gives it.
	Where  string
	Record Record
	// In is how long until the lease may be taken over, unless renewed.
	In time.Duration
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is held by %s since %s; it can be taken over in %v unless renewed: stop that one, or wait",
		e.Where, e.Record.Holder, e.Record.Since.UTC().Format(time.RFC3339), roundUp(e.In))
}

func (e *HeldError) Unwrap() error { return ErrHeld }

func roundUp(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d.Truncate(time.Second) + time.Second
}

// Lease is a lease held. Run renews it; Context is cancelled when it is
// lost, expires or is released.
type Lease struct {
	// Log gets a warning for each renewal that fails but may be tried
	// again; nil logs nothing. Set it before Run.
	Log *slog.Logger

	b           storage.Backend
	name, where string
	holder      Holder
	ttl         time.Duration

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	etag     string
	rec      Record
	sent     time.Time   // when the last successful write was sent (monotonic)
	deadline time.Time   // sent + ttl - margin: stop writing then
	timer    *time.Timer // cancels ctx at deadline
}

// Acquire takes the lease object name for holder, for ttl (DefaultTTL if
// 0; at least 60ms): it creates it if there is none, takes it over if it
// was released or expired more than ttl/6 ago (by this host's clock), and
// renews it if it is holder's own. A lease held by another fails with a
// *HeldError (ErrHeld), which names the holder in one line. The lease is
// held until Run stops renewing it, or Release.
//
// b should not encrypt: every host that may run for the source reads the
// lease.
func Acquire(ctx context.Context, b storage.Backend, name string, holder Holder, ttl time.Duration) (*Lease, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 60*time.Millisecond {
		return nil, fmt.Errorf("lease: ttl %v is too short", ttl)
	}
	if holder.Generation == "" || holder.Host == "" {
		return nil, errors.New("lease: the holder needs a host and a generation (NewHolder)")
	}
	if err := storage.ValidName(name); err != nil {
		return nil, err
	}
	l := &Lease{b: b, name: name, where: storage.Where(b, name), holder: holder, ttl: ttl}
	for try := 0; ; try++ {
		if try == 10 { // each try saw the record change or vanish: a store that churns
			return nil, fmt.Errorf("acquire lease %s: the record kept changing while it was read", l.where)
		}
		now := time.Now()
		rec := l.record(now, now)
		data := rec.encode()
		sent := time.Now()
		info, err := b.PutIfAbsent(ctx, name, bytes.NewReader(data), int64(len(data)))
		if err == nil {
			return l.start(info.ETag, rec, sent), nil
		}
		if !errors.Is(err, storage.ErrExists) {
			return nil, fmt.Errorf("acquire lease: %w", err)
		}
		cur, etag, curData, err := l.read(ctx)
		switch {
		case storage.IsNotExist(err):
			continue // removed since: create it again
		case err != nil:
			return nil, fmt.Errorf("acquire lease: %w", err)
		case bytes.Equal(curData, data):
			return l.start(etag, rec, sent), nil // our write whose reply was lost (ErrUncertain)
		}
		now = time.Now()
		since := now
		switch {
		case cur.Holder.Same(holder) && !cur.Released:
			since = cur.Since // ours: renew it
		case cur.Free(now):
			// released or expired: take it over
		default:
			return nil, &HeldError{Where: l.where, Record: cur, In: cur.takeable().Sub(now)}
		}
		rec = l.record(since, now)
		data = rec.encode()
		sent = time.Now()
		info, err = b.ReplaceIf(ctx, name, bytes.NewReader(data), int64(len(data)), etag)
		switch {
		case err == nil:
			return l.start(info.ETag, rec, sent), nil
		case errors.Is(err, storage.ErrUncertain):
			_, etag, curData, rerr := l.read(ctx)
			if rerr == nil && bytes.Equal(curData, data) {
				return l.start(etag, rec, sent), nil
			}
			continue // another's write won: read it again
		case errors.Is(err, storage.ErrPrecondition), storage.IsNotExist(err):
			continue // another took it first, or it was removed: read it again
		default:
			return nil, fmt.Errorf("acquire lease: %w", err)
		}
	}
}

func (l *Lease) record(since, now time.Time) Record {
	// Milliseconds, for the operator's eyes; the expiry rounded up.
	return Record{Format: Format, Holder: l.holder, Since: since.UTC().Truncate(time.Millisecond),
		Renewed: now.UTC().Truncate(time.Millisecond), Expires: now.Add(l.ttl + time.Millisecond - 1).UTC().Truncate(time.Millisecond),
		TTLMillis: l.ttl.Milliseconds()}
}

// start makes l held from a write sent at sent.
func (l *Lease) start(etag string, rec Record, sent time.Time) *Lease {
	l.ctx, l.cancel = context.WithCancelCause(context.Background())
	l.etag, l.rec, l.sent = etag, rec, sent
	l.deadline = sent.Add(l.ttl - margin(l.ttl))
	l.timer = time.AfterFunc(time.Until(l.deadline), l.expire)
	return l
}

// expire ends the lease at its deadline. It takes no lock: renew holds
// the lock while it stops the timer.
func (l *Lease) expire() { l.cancel(l.expired()) }

func (l *Lease) expired() error {
	return fmt.Errorf("%w: %s could not be renewed within %v of its last renewal; stop writing",
		ErrExpired, l.where, l.ttl-margin(l.ttl))
}

// read reads the record with an ETag that matches the bytes read: Stat,
// Get, Stat again, until the two Stats agree.
func (l *Lease) read(ctx context.Context) (Record, string, []byte, error) {
	for try := 0; try < 5; try++ {
		before, err := l.b.Stat(ctx, l.name)
		if err != nil {
			return Record{}, "", nil, err
		}
		rc, err := l.b.Get(ctx, l.name, 0, -1)
		if err != nil {
			return Record{}, "", nil, err
		}
		data, err := io.ReadAll(io.LimitReader(rc, 64<<10))
		rc.Close()
		if err != nil {
			return Record{}, "", nil, err
		}
		after, err := l.b.Stat(ctx, l.name)
		if err != nil {
			return Record{}, "", nil, err
		}
		if before.ETag != after.ETag {
			continue // replaced while it was read
		}
		rec, err := decode(l.where, data)
		return rec, after.ETag, data, err
	}
	return Record{}, "", nil, fmt.Errorf("lease %s: %w", l.where, errChurn)
}

var errChurn = errors.New("the record kept changing while it was read")

// Context returns a context that is cancelled, with ErrLost, ErrExpired
// or ErrReleased as its cause (context.Cause), when the lease is lost,
// expires without renewal, or is released. Writes made for the holder
// should use it, so that they stop when the lease does.
func (l *Lease) Context() context.Context { return l.ctx }

// Generation is the holder's generation, to put in what is written under
// the lease (a manifest), so that writes can be fenced by it.
func (l *Lease) Generation() string { return l.holder.Generation }

// Record returns the record last written by this holder.
func (l *Lease) Record() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec
}

// Deadline is when this holder stops writing unless the lease is renewed
// first (by this host's monotonic clock): TTL - TTL/6 after the last
// successful renewal was sent.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Run renews the lease every TTL/3 until ctx ends (it returns nil), the
// lease is released (nil), or it is lost: another holder took it
// (ErrLost), or it could not be renewed before the deadline (ErrExpired).
// A failed renewal is tried again every TTL/10 until the deadline.
// Context() is cancelled when the lease is lost, also without Run.
//
// A Run that returns because ctx ended leaves the lease to expire, as a
// crash would; Release gives it up at once.
func (l *Lease) Run(ctx context.Context) error {
	for {
		l.mu.Lock()
		next := l.sent.Add(l.ttl / 3)
		l.mu.Unlock()
		if err := l.sleep(ctx, time.Until(next)); err != nil || ctx.Err() != nil {
			return err
		}
		for {
			err := l.renew(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrLost) || l.ctx.Err() != nil {
				return l.lost(err)
			}
			if l.Log != nil {
				l.Log.Warn("lease renewal failed; retrying", "lease", l.where, "deadline_in",
					time.Until(l.Deadline()).Round(time.Millisecond), "err", err)
			}
			if err := l.sleep(ctx, l.ttl/10); err != nil || ctx.Err() != nil {
				return err
			}
		}
	}
}

// sleep waits d; it returns the lease's end as an error (nil if released).
func (l *Lease) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-l.ctx.Done():
		return l.lost(nil)
	case <-t.C:
		return nil
	}
}

// lost records why the lease ended (err, if it is the first reason) and
// returns the reason, nil if it was released.
func (l *Lease) lost(err error) error {
	if err != nil {
		l.cancel(err)
	}
	cause := context.Cause(l.ctx)
	if errors.Is(cause, ErrReleased) {
		return nil
	}
	return cause
}

// renew writes a renewed record in place of the one last written.
func (l *Lease) renew(ctx context.Context) error {
	l.mu.Lock()
	etag, since, deadline := l.etag, l.rec.Since, l.deadline
	l.mu.Unlock()
	if l.ctx.Err() != nil {
		return context.Cause(l.ctx)
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	now := time.Now()
	rec := l.record(since, now)
	data := rec.encode()
	info, err := l.b.ReplaceIf(rctx, l.name, bytes.NewReader(data), int64(len(data)), etag)
	if errors.Is(err, storage.ErrUncertain) {
		// Our write may have landed: it is ours if the bytes are.
		_, etag, cur, rerr := l.read(rctx)
		if rerr == nil && bytes.Equal(cur, data) {
			info, err = storage.Info{ETag: etag}, nil
		}
	}
	switch {
	case err == nil:
		l.mu.Lock()
		defer l.mu.Unlock()
		if !l.timer.Stop() {
			// The deadline passed while the write was made, or the
			// lease was released.
			if cause := context.Cause(l.ctx); cause != nil {
				return cause
			}
			return l.expired()
		}
		l.etag, l.rec, l.sent = info.ETag, rec, now
		l.deadline = now.Add(l.ttl - margin(l.ttl))
		l.timer.Reset(time.Until(l.deadline))
		return nil
	case errors.Is(err, storage.ErrPrecondition), storage.IsNotExist(err):
		return l.taken(ctx, err)
	default:
		return fmt.Errorf("renew lease: %w", err)
	}
}

// taken returns ErrLost, naming the new holder if it can read it.
func (l *Lease) taken(ctx context.Context, cause error) error {
	rctx, cancel := context.WithTimeout(ctx, max(l.ttl/3, time.Second))
	defer cancel()
	cur, _, _, err := l.read(rctx)
	switch {
	case storage.IsNotExist(err):
		return fmt.Errorf("%w: %s was removed", ErrLost, l.where)
	case err != nil:
		return fmt.Errorf("%w: %s changed: %v", ErrLost, l.where, cause)
	case cur.Released && cur.Holder.Same(l.holder):
		return ErrReleased
	case cur.Released:
		return fmt.Errorf("%w: %s was taken by %s since %s, who released it", ErrLost, l.where, cur.Holder, cur.Since.Format(time.RFC3339))
	default:
		return fmt.Errorf("%w: %s was taken by %s since %s; stop writing", ErrLost, l.where, cur.Holder, cur.Since.Format(time.RFC3339))
	}
}

// Check verifies that the lease is still this holder's, right before a
// commit-point write (a manifest): its deadline has not passed and the
// record in the store is the one it last wrote (a Stat). It fails with
// ErrLost, ErrExpired or ErrReleased once the lease is not held, and with
// the store's error when it cannot tell; either way the write must not be
// made. A Check that finds the lease lost also cancels Context().
func (l *Lease) Check(ctx context.Context) error {
	if l.ctx.Err() != nil {
		return context.Cause(l.ctx)
	}
	l.mu.Lock()
	etag, deadline := l.etag, l.deadline
	l.mu.Unlock()
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	info, err := l.b.Stat(rctx, l.name)
	switch {
	case err == nil && info.ETag == etag:
	case err == nil:
		// Changed: by a renewal of ours that Run has not recorded yet, or
		// by another.
		cur, _, _, rerr := l.read(rctx)
		if rerr == nil && cur.Holder.Same(l.holder) && !cur.Released {
			break
		}
		if rerr != nil && !storage.IsNotExist(rerr) {
			return fmt.Errorf("check lease: %w", rerr)
		}
		l.cancel(l.taken(ctx, storage.ErrPrecondition))
	case storage.IsNotExist(err):
		l.cancel(fmt.Errorf("%w: %s was removed", ErrLost, l.where))
	default:
		if l.ctx.Err() == nil {
			return fmt.Errorf("check lease: %w", err)
		}
	}
	if l.ctx.Err() != nil {
		return context.Cause(l.ctx)
	}
	return nil
}

// Release gives the lease up: it writes a released record in place of its
// own, so that another may take it at once, and cancels Context() with
// ErrReleased; Run returns nil. A lease that is no longer this holder's
// is left as it is, without an error.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	etag := l.etag
	rec := l.rec
	l.timer.Stop()
	l.mu.Unlock()
	defer l.cancel(fmt.Errorf("%w: %s", ErrReleased, l.where))
	now := time.Now().UTC().Round(time.Millisecond)
	rec.Renewed, rec.Expires, rec.Released = now, now, true
	data := rec.encode()
	for try := 0; try < 3; try++ {
		_, err := l.b.ReplaceIf(ctx, l.name, bytes.NewReader(data), int64(len(data)), etag)
		switch {
		case err == nil, storage.IsNotExist(err):
			return nil
		case !errors.Is(err, storage.ErrPrecondition):
			return fmt.Errorf("release lease: %w", err)
		}
		// Changed: by a renewal that Run made meanwhile (then release
		// that one), by our own release whose reply was lost, or by
		// another holder.
		cur, curETag, _, err := l.read(ctx)
		switch {
		case storage.IsNotExist(err):
			return nil
		case err != nil:
			return fmt.Errorf("release lease: %w", err)
		case !cur.Holder.Same(l.holder) || cur.Released:
			return nil
		}
		etag = curETag
	}
	return fmt.Errorf("release lease %s: it kept changing", l.where)
}

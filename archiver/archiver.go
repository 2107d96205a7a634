// Package archiver turns a source's replication stream into its durable
// archive: one Archiver per source, each with Run(ctx).
package archiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlog"
	"github.com/understudy-db/understudy/replication"
)

// Defaults of an Archiver's tuning fields.
const (
	DefaultSyncInterval = 0
	DefaultMaxBackoff   = 30 * time.Second
)

// Archiver streams one source into its archive directory, reconnecting
// with backoff and resuming exactly after the last durable transaction.
type Archiver struct {
	Source understudy.Source
	Dir    string
	Log    *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics

	// SyncInterval is the least time between two syncs of the archive. 0
	// syncs as soon as the previous sync is done (group commit): a commit
	// waits for at most one sync in flight and its own.
	SyncInterval time.Duration
	MaxFileSize  int64
	MaxBackoff   time.Duration
	// OnCommit, if set, is called after each archived transaction (tests).
	OnCommit func(archive.Record)
	// UntilCaughtUp makes Run return once the archive holds the primary's
	// binlog position as of the connection (a one-shot catch-up).
	UntilCaughtUp bool

	mu       sync.Mutex
	status   understudy.SourceStatus
	writer   *archive.Writer
	lastSync time.Time

	// stream state, only touched by the stream goroutine
	grouper   binlog.Grouper
	checksum  bool
	skipping  bool
	skew      time.Duration
	caughtUp  bool
	lastEvent uint32
	target    understudy.Position // UntilCaughtUp: the primary's position
	finished  bool
}

var errFinished = errors.New("caught up")

// syncFailure is the cause a failed fsync cancels a source with.
type syncFailure struct{ err error }

func (s syncFailure) Error() string { return s.err.Error() }

// New returns an Archiver with default tuning.
func New(src understudy.Source, dir string, log *slog.Logger, m *Metrics) *Archiver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Archiver{
		Source: src, Dir: dir, Log: log.With("source", src.Name), Metrics: m,
		SyncInterval: DefaultSyncInterval, MaxBackoff: DefaultMaxBackoff,
		status: understudy.SourceStatus{Name: src.Name, State: understudy.StateStarting, Primary: src.Addr()},
	}
}

// Status returns the current status.
func (a *Archiver) Status() understudy.SourceStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	if a.writer != nil {
		d := a.writer.Durable()
		s.Position = d.Position.String()
		s.BytesArchived = d.Bytes
		s.ArchiveFile = d.File
		if d.Time != 0 {
			t := time.Unix(int64(d.Time), 0).UTC()
			s.LastCommit = &t
		}
	}
	if s.State == understudy.StateStreaming {
		var behind int64
		if !a.caughtUp && a.lastEvent != 0 {
			behind = max(0, int64(time.Since(time.Unix(int64(a.lastEvent), 0).Add(-a.skew))/time.Second))
		}
		s.SecondsBehind = &behind
	}
	return s
}

// Writer returns the archive writer while Run is running.
func (a *Archiver) Writer() *archive.Writer {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.writer
}

func (a *Archiver) setState(st understudy.State, err error) {
	a.mu.Lock()
	a.status.State = st
	if err != nil {
		now := time.Now().UTC()
		a.status.LastError, a.status.LastErrorTime = err.Error(), &now
	}
	a.mu.Unlock()
	if a.Metrics != nil {
		up := 0.0
		if st == understudy.StateStreaming {
			up = 1
		}
		a.Metrics.Up.WithLabelValues(a.Source.Name).Set(up)
		if st != understudy.StateStreaming {
			a.Metrics.SecondsBehind.WithLabelValues(a.Source.Name).Set(-1)
		}
	}
}

// Run archives until ctx ends. It returns an error only when the archive
// cannot be opened or written; connection trouble is retried forever.
func (a *Archiver) Run(ctx context.Context) error {
	w, err := archive.OpenWriter(a.Dir, archive.WriterOptions{MaxFileSize: a.MaxFileSize, Logger: a.Log})
	if err != nil {
		a.setState(understudy.StateError, err)
		return &understudy.Error{Op: "open archive", Source: a.Source.Name, Err: err}
	}
	a.mu.Lock()
	a.writer = w
	a.mu.Unlock()
	defer func() {
		if err := w.Close(); err != nil {
			a.Log.Error("closing archive", "err", err)
		}
		a.setState(understudy.StateStopped, nil)
	}()
	a.Log.Info("archive opened", "dir", a.Dir, "position", w.Position().String())

	// A failed fsync stops the source: after one, the kernel may have
	// dropped the data while reporting the pages clean.
	ctx, fail := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	flushCtx, stopFlush := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); a.flusher(flushCtx, w, fail) }()
	defer func() { stopFlush(); wg.Wait() }()

	backoff := time.Second
	for attempt := 0; ; attempt++ {
		if attempt > 0 && a.Metrics != nil {
			a.Metrics.Reconnects.WithLabelValues(a.Source.Name).Inc()
		}
		if attempt > 0 {
			a.mu.Lock()
			a.status.Reconnects++
			a.mu.Unlock()
		}
		progressed, err := a.session(ctx, w)
		if a.finished {
			a.Log.Info("caught up with the primary", "position", w.Position().String())
			return nil
		}
		var sf syncFailure
		if errors.As(context.Cause(ctx), &sf) {
			a.setState(understudy.StateError, sf.err)
			return &understudy.Error{Op: "sync archive", Source: a.Source.Name, Err: sf.err, Hint: "check the disk, then restart understudy; it resumes from what is on disk"}
		}
		if rerr := w.Reopen(); rerr != nil {
			a.setState(understudy.StateError, rerr)
			return &understudy.Error{Op: "recover archive", Source: a.Source.Name, Err: rerr}
		}
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			backoff = time.Second
		}
		state := understudy.StateReconnecting
		if permanent(err) {
			state = understudy.StateError
			a.Log.Error("archiving stopped; retrying", "err", err, "retry_in", backoff)
		} else {
			a.Log.Warn("stream ended; reconnecting", "err", err, "retry_in", backoff)
		}
		a.setState(state, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, a.MaxBackoff)
	}
}

// permanent reports errors that a retry will not fix without a human.
func permanent(err error) bool {
	var ue *understudy.Error
	return errors.Is(err, understudy.ErrPurged) || (errors.As(err, &ue) && ue.Hint != "")
}

// session checks the primary and streams until an error. progressed says
// whether any transaction was archived.
func (a *Archiver) session(ctx context.Context, w *archive.Writer) (progressed bool, err error) {
	info, warnings, err := replication.Check(ctx, a.Source)
	if err != nil {
		return false, err
	}
	for _, msg := range warnings {
		a.Log.Warn(msg)
	}
	a.mu.Lock()
	a.status.PrimaryVersion = info.Version
	a.skew = info.ClockSkew
	a.mu.Unlock()
	start := w.Position()
	if a.UntilCaughtUp {
		a.target = info.BinlogPos
		if start.ContainsPosition(a.target) {
			a.finished = true
			return false, nil
		}
	}
	a.Log.Info("streaming", "primary", a.Source.Addr(), "version", info.Version, "from", start.String(), "primary_position", info.BinlogPos.String())
	a.grouper.Reset()
	a.skipping, a.checksum, a.caughtUp = false, false, false
	a.setState(understudy.StateStreaming, nil)
	before := w.Durable().Position
	err = replication.Stream(ctx, a.Source, start, a.Log, replication.HandlerFunc(func(ev []byte) error {
		return a.handle(w, ev)
	}))
	progressed = !w.Durable().Position.Equal(before) || !w.Position().Equal(start)
	if err == nil && ctx.Err() == nil {
		err = errors.New("stream closed")
	}
	return progressed, err
}

// handle routes one event of the stream into the archive.
func (a *Archiver) handle(w *archive.Writer, ev []byte) error {
	step, err := a.grouper.Next(ev, a.checksum)
	if err != nil {
		return fmt.Errorf("stream out of order: %w", err)
	}
	typ := ev[4]
	if typ != binlog.HeartbeatEvent {
		a.mu.Lock()
		a.caughtUp = false
		if ts := binlogTimestamp(ev); ts != 0 {
			a.lastEvent = ts
		}
		a.mu.Unlock()
	}
	switch step {
	case binlog.Meta:
		switch typ {
		case binlog.FormatDescriptionEvent:
			fd, err := binlog.ParseFormatDescription(ev)
			if err != nil {
				return err
			}
			if fd.ChecksumAlg == binlog.ChecksumCRC32 {
				if err := binlog.VerifyChecksum(ev); err != nil {
					return fmt.Errorf("format description: %w", err)
				}
			}
			a.checksum = fd.ChecksumAlg == binlog.ChecksumCRC32
			return w.SetFormat(ev)
		case binlog.HeartbeatEvent:
			a.mu.Lock()
			a.caughtUp = true
			a.mu.Unlock()
		case binlog.RotateEvent:
			name, _, err := binlog.ParseRotate(ev, a.checksum && ev[17]&binlog.FlagArtificial == 0)
			if err == nil {
				a.mu.Lock()
				a.status.PrimaryBinlog = name
				a.mu.Unlock()
			}
		}
		return nil
	case binlog.Begin:
		gi, err := binlog.ParseGTIDEvent(ev, a.checksum)
		if err != nil {
			return err
		}
		if w.Position().Contains(gi.GTID) {
			a.Log.Warn("skipping a transaction that is already archived", "gtid", gi.GTID.String())
			a.skipping = true
			return nil
		}
		return w.Begin(ev, gi.GTID)
	case binlog.Inside:
		if a.skipping {
			return nil
		}
		return w.Append(ev)
	case binlog.End:
		if a.skipping {
			a.skipping = false
			return nil
		}
		rec, err := w.Commit(ev)
		if err != nil {
			return err
		}
		if a.Metrics != nil {
			a.Metrics.Transactions.WithLabelValues(a.Source.Name).Inc()
		}
		a.mu.Lock()
		a.status.Transactions++
		a.mu.Unlock()
		if a.OnCommit != nil {
			a.OnCommit(rec)
		}
		if a.UntilCaughtUp && w.Position().ContainsPosition(a.target) {
			if err := a.sync(w); err != nil {
				return err
			}
			a.finished = true
			return errFinished
		}
		// Semi-sync: the ACK goes out when this returns, so sync first.
		if a.Source.SemiSync {
			return a.sync(w)
		}
		return nil
	case binlog.Single:
		a.Log.Warn("event outside any transaction", "type", binlog.TypeName(typ))
		return w.AppendSingle(ev)
	}
	return nil
}

func (a *Archiver) sync(w *archive.Writer) error {
	t := time.Now()
	if err := w.Sync(); err != nil {
		return fmt.Errorf("sync archive: %w", err)
	}
	a.observeSync(w, time.Since(t))
	return nil
}

func (a *Archiver) observeSync(w *archive.Writer, took time.Duration) {
	if a.Metrics == nil {
		return
	}
	a.Metrics.Fsync.WithLabelValues(a.Source.Name).Observe(took.Seconds())
	d := w.Durable()
	a.Metrics.Bytes.WithLabelValues(a.Source.Name).Set(float64(d.Bytes))
	a.Metrics.LastCommit.WithLabelValues(a.Source.Name).Set(float64(d.Time))
	if s := a.Status(); s.SecondsBehind != nil {
		a.Metrics.SecondsBehind.WithLabelValues(a.Source.Name).Set(float64(*s.SecondsBehind))
	}
}

// flusher syncs the archive whenever transactions were committed, at most
// once per SyncInterval: group commit. fail stops the source.
func (a *Archiver) flusher(ctx context.Context, w *archive.Writer, fail context.CancelCauseFunc) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.Commits():
		case <-tick.C: // a safety net; Sync is a no-op when nothing is new
		}
		st := time.Now()
		if err := w.Sync(); err != nil {
			a.Log.Error("sync archive failed; stopping this source", "err", err)
			fail(syncFailure{err})
			return
		}
		a.observeSync(w, time.Since(st))
		if a.SyncInterval > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(a.SyncInterval - time.Since(st)):
			}
		}
	}
}

func binlogTimestamp(ev []byte) uint32 {
	return uint32(ev[0]) | uint32(ev[1])<<8 | uint32(ev[2])<<16 | uint32(ev[3])<<24
}

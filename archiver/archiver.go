// Package archiver turns a source's replication stream into its durable
// archive: one Archiver per source, each with Run(ctx).
package archiver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
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
	// binlog position as of the connection (a one-shot catch-up). It also
	// makes Run give up, with the error, on a cause that no retry fixes.
	UntilCaughtUp bool
	// StartMode is where an empty archive begins: StartOldest (default) or
	// StartCurrent.
	StartMode string
	// GapMode is what happens when the primary purged binlogs the archive
	// still needs: GapNewGeneration (default) or GapStop.
	GapMode string
	// MaxFileAge seals the active file once it is this old (0: the
	// archive's default).
	MaxFileAge time.Duration
	// LowDisk, if set, reports whether free bytes out of total are below
	// the configured minimum; MinFree describes that minimum.
	LowDisk func(free, total uint64) bool
	MinFree string
	// OnGeneration, if set, is called when a generation begins (the first
	// one of an empty archive included), for a base snapshot.
	OnGeneration func(archive.Generation)
	// DiskEvery is how often the disk space is checked (default 15s).
	DiskEvery time.Duration

	mu       sync.Mutex
	status   understudy.SourceStatus
	writer   *archive.Writer
	lastSync time.Time
	kick     context.CancelCauseFunc // ends the current session
	fail     context.CancelCauseFunc // stops the source
	diskFull bool
	lowDisk  bool
	// semiSync: the current session acknowledges semi-sync (semi_sync is
	// set and the primary had it on when the session began). semiMode is
	// the last session's mode, for the fallbacks counter: 0 none yet, 1
	// semi-sync, 2 asynchronous.
	semiSync bool
	semiMode int

	// stream state, only touched by the stream goroutine
	skew      time.Duration
	caughtUp  bool
	lastEvent uint32
	target    understudy.Position // UntilCaughtUp: the primary's position
	finished  bool
	// firstEvent is when the session's first event arrived.
	firstEvent time.Time

	// the last retry logged at its level (see logRetry)
	lastRetryErr string
	lastRetryLog time.Time
}

var errFinished = errors.New("caught up")

// Start and gap modes (archive.start, archive.on_gap).
const (
	StartOldest      = "oldest"
	StartCurrent     = "current"
	GapNewGeneration = "new-generation"
	GapStop          = "stop"
)

// syncFailure is the cause a failed fsync cancels a source with.
type syncFailure struct{ err error }

func (s syncFailure) Error() string { return s.err.Error() }

// New returns an Archiver with default tuning.
func New(src understudy.Source, dir string, log *slog.Logger, m *Metrics) *Archiver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m != nil {
		m.init(src)
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
		g := a.writer.Generation()
		s.Generation, s.ArchiveStart, s.ArchiveStartReason = g.ID, g.StartPosition.String(), g.Reason
		for _, gen := range a.writer.Generations() {
			if gen.Gap != nil {
				s.Gaps = append(s.Gaps, *gen.Gap)
			}
		}
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
	if st == understudy.StateStreaming && a.diskFull {
		// Connected again, but nothing is durable until the disk has
		// room: the state stays error until a sync succeeds.
		a.mu.Unlock()
		return
	}
	a.status.State = st
	if err != nil {
		now := time.Now().UTC()
		a.status.LastError, a.status.LastErrorTime = err.Error(), &now
	}
	semi := a.semiSync && st == understudy.StateStreaming
	a.mu.Unlock()
	if a.Metrics != nil {
		up := 0.0
		if st == understudy.StateStreaming {
			up = 1
		}
		a.Metrics.Up.WithLabelValues(a.Source.Name).Set(up)
		a.Metrics.setState(a.Source.Name, st)
		if st != understudy.StateStreaming {
			a.Metrics.SecondsBehind.WithLabelValues(a.Source.Name).Set(-1)
		}
		if a.Source.SemiSync {
			v := 0.0
			if semi {
				v = 1
			}
			a.Metrics.SemiSyncActive.WithLabelValues(a.Source.Name).Set(v)
		}
	}
}

// Run archives until ctx ends. It returns an error only when the archive
// cannot be opened or written for a reason other than a full disk, or a
// fsync failed, or, with UntilCaughtUp, when the primary refuses for a
// cause that no retry fixes (see permanent); otherwise connection trouble
// is retried forever, and a full disk is waited out.
func (a *Archiver) Run(ctx context.Context) error {
	w, err := a.openWriter(ctx)
	if err != nil || w == nil {
		return err
	}
	a.mu.Lock()
	a.writer = w
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.writer = nil // nothing may use it once the lock is released
		a.mu.Unlock()
		if err := w.Close(); err != nil {
			a.Log.Error("closing archive", "err", err)
		}
		a.setState(understudy.StateStopped, nil)
	}()
	g := w.Generation()
	if a.Metrics != nil && w.Began() {
		a.Metrics.Generation.WithLabelValues(a.Source.Name).Set(float64(g.ID))
	}
	a.Log.Info("archive opened", "dir", a.Dir, "position", w.Position().String(), "generation", g.ID, "generation_start", g.StartPosition.String())

	// A failed fsync stops the source: after one, the kernel may have
	// dropped the data while reporting the pages clean.
	ctx, fail := context.WithCancelCause(ctx)
	a.mu.Lock()
	a.fail = fail
	a.mu.Unlock()
	var wg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); a.flusher(bgCtx, w, fail) }()
	go func() { defer wg.Done(); a.watchDisk(bgCtx) }()
	defer func() { stopBg(); wg.Wait() }()

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
		sctx, kick := context.WithCancelCause(ctx)
		a.mu.Lock()
		a.kick = kick
		a.mu.Unlock()
		progressed, streamed, err := a.session(sctx, w)
		if sctx.Err() != nil && ctx.Err() == nil {
			err = context.Cause(sctx) // ended by the flusher: a failed write
		}
		kick(nil)
		if a.finished {
			a.Log.Info("caught up with the primary", "position", w.Position().String())
			return nil
		}
		if serr := fsyncFailure(context.Cause(ctx), err); serr != nil {
			a.setState(understudy.StateError, serr)
			return &understudy.Error{Op: "sync archive", Source: a.Source.Name, Err: serr, Hint: "check the disk, then restart understudy; it resumes from what is on disk"}
		}
		if rerr := a.reopen(ctx, w); rerr != nil {
			return rerr
		}
		if ctx.Err() != nil {
			return nil
		}
		if progressed || streamed >= time.Second {
			backoff = time.Second
		}
		if archive.DiskFull(err) {
			a.noteDiskFull(err)
			if !sleep(ctx, diskRetry) {
				return nil
			}
			continue
		}
		if errors.Is(err, understudy.ErrPurged) && a.GapMode != GapStop {
			gerr := a.newGeneration(ctx, w, err)
			if gerr == nil {
				backoff = time.Second
				continue
			}
			a.Log.Error("the primary purged binlogs the archive needs, and no new generation could be started", "err", gerr)
			err = gerr
		}
		state := understudy.StateReconnecting
		delay := backoff
		switch {
		case permanent(err):
			state = understudy.StateError
			if a.UntilCaughtUp {
				// A one-shot catch-up gives up: no retry fixes this.
				a.setState(state, err)
				return &understudy.Error{Source: a.Source.Name, Err: err}
			}
			backoff = min(2*backoff, a.MaxBackoff)
		case streamed >= time.Second:
			// A stream that was up broke: reconnect at once.
			delay = 0
		case errors.Is(err, replication.ErrTimeout):
			// No answer (a dead network): the try already waited
			// replication.ConnectTimeout, so try again after a second,
			// without backing off, to stream again within seconds of the
			// network's return.
			delay = min(time.Second, a.MaxBackoff)
		default:
			backoff = min(2*backoff, a.MaxBackoff)
		}
		a.logRetry(state, err, delay)
		a.setState(state, err)
		if !sleep(ctx, delay) {
			return nil
		}
	}
}

// logRetry logs why a session ended. The same error again within a minute
// is logged at debug level only: a dead network is tried every few seconds.
func (a *Archiver) logRetry(state understudy.State, err error, delay time.Duration) {
	msg, lvl := "stream ended; reconnecting", slog.LevelWarn
	if state == understudy.StateError {
		msg, lvl = "archiving stopped; retrying", slog.LevelError
	}
	now := time.Now()
	if err.Error() == a.lastRetryErr && now.Sub(a.lastRetryLog) < time.Minute {
		lvl = slog.LevelDebug
	} else {
		a.lastRetryErr, a.lastRetryLog = err.Error(), now
	}
	a.Log.Log(context.Background(), lvl, msg, "err", err, "retry_in", delay)
}

// fsyncFailure returns the failed fsync among the causes of a session's
// end, if any: whether the flusher, an inline sync (semi-sync, a seal on
// rotation, a new generation) or recovery hit it, the source stops.
func fsyncFailure(errs ...error) error {
	for _, err := range errs {
		var sf syncFailure
		if errors.As(err, &sf) {
			return sf.err
		}
		var se *archive.SyncError
		if errors.As(err, &se) {
			return se
		}
	}
	return nil
}

// diskRetry is how often a full disk is tried again.
const diskRetry = 2 * time.Second

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// lockWait is how long openWriter waits for the archive's lock: a
// command that holds it for a moment (prune, or a snapshot's retention)
// is waited for; another `understudy run` holding it is an error.
const lockWait = 5 * time.Second

// openWriter opens the archive, waiting while the disk is full, or for
// up to lockWait while another process holds the archive. It returns nil,
// nil when ctx ends first.
func (a *Archiver) openWriter(ctx context.Context) (*archive.Writer, error) {
	lockedSince := time.Time{}
	for {
		w, err := archive.OpenWriter(a.Dir, archive.WriterOptions{MaxFileSize: a.MaxFileSize, MaxFileAge: a.MaxFileAge, Logger: a.Log})
		if err == nil {
			a.noteDiskBack()
			return w, nil
		}
		if errors.Is(err, understudy.ErrLocked) {
			if lockedSince.IsZero() {
				lockedSince = time.Now()
				a.Log.Info("the archive is locked by another process; waiting for it", "dir", a.Dir, "up_to", lockWait)
			}
			if time.Since(lockedSince) < lockWait {
				if !sleep(ctx, 100*time.Millisecond) {
					return nil, nil
				}
				continue
			}
		}
		if !archive.DiskFull(err) {
			a.setState(understudy.StateError, err)
			return nil, &understudy.Error{Op: "open archive", Source: a.Source.Name, Err: err}
		}
		a.noteDiskFull(err)
		if !sleep(ctx, diskRetry) {
			return nil, nil
		}
	}
}

// reopen recovers the archive from disk after a session, waiting while
// the disk is full.
func (a *Archiver) reopen(ctx context.Context, w *archive.Writer) error {
	for {
		err := w.Reopen()
		if err == nil {
			return nil
		}
		var se *archive.SyncError
		if !archive.DiskFull(err) || errors.As(err, &se) {
			a.setState(understudy.StateError, err)
			return &understudy.Error{Op: "recover archive", Source: a.Source.Name, Err: err}
		}
		a.noteDiskFull(err)
		if !sleep(ctx, diskRetry) {
			return nil
		}
	}
}

// noteDiskFull reports a full disk once per episode: archiving pauses, with
// nothing lost, and resumes by itself once space returns.
func (a *Archiver) noteDiskFull(err error) {
	a.mu.Lock()
	first := !a.diskFull
	a.diskFull = true
	a.mu.Unlock()
	if first {
		a.Log.Error("archive disk full; archiving paused, nothing is lost, and it resumes by itself once space is freed", "err", err)
		if a.Metrics != nil {
			a.Metrics.DiskFull.WithLabelValues(a.Source.Name).Inc()
		}
	}
	a.setState(understudy.StateError, fmt.Errorf("archive disk full (archiving resumes by itself once space is freed): %w", err))
}

func (a *Archiver) diskFullNow() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.diskFull
}

// freeBytes is the space available to unprivileged users under dir (0 when
// unknown).
func freeBytes(dir string) uint64 {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

func (a *Archiver) noteDiskBack() {
	a.mu.Lock()
	was := a.diskFull
	a.diskFull = false
	a.mu.Unlock()
	if was {
		a.Log.Info("archive disk has space again; archiving resumes")
		if a.Writer() != nil {
			a.setState(understudy.StateStreaming, nil)
		}
	}
}

// begin starts the first generation of an empty archive: at the oldest
// position the primary still holds, or at its current position.
func (a *Archiver) begin(ctx context.Context, w *archive.Writer, info replication.Primary) error {
	var start understudy.Position
	var reason string
	if a.StartMode == StartCurrent {
		start = info.BinlogPos
		reason = fmt.Sprintf("archive.start: current: the primary's gtid_binlog_pos %q when the archive began; earlier transactions are not archived", start.String())
	} else {
		o, err := replication.OldestPosition(ctx, a.Source, a.Log)
		if err != nil {
			return err
		}
		start = o.Position
		if start.IsZero() {
			reason = fmt.Sprintf("archive.start: oldest: the primary holds its whole history, from its first binlog %s", o.File)
		} else {
			reason = fmt.Sprintf("archive.start: oldest: the oldest position the primary still holds (its oldest binlog %s begins at %q); what it purged before that is not archived", o.File, start.String())
		}
	}
	g, err := w.StartGeneration(start, reason, nil)
	if err != nil {
		return &understudy.Error{Op: "begin archive", Source: a.Source.Name, Err: err}
	}
	a.Log.Info("archive begins", "generation", g.ID, "position", start.String(), "reason", reason)
	a.generationStarted(g)
	return nil
}

// newGeneration handles a primary that purged binlogs the archive still
// needs: it closes the current generation, records the gap and begins a
// new generation at the primary's oldest position. Nothing of the older
// generation changes.
func (a *Archiver) newGeneration(ctx context.Context, w *archive.Writer, cause error) error {
	o, err := replication.OldestPosition(ctx, a.Source, a.Log)
	if err != nil {
		return fmt.Errorf("%w; reading the primary's oldest binlog for a new generation: %v", cause, err)
	}
	from := w.Position()
	if from.ContainsPosition(o.Position) {
		// The primary still has everything after the archive: the error
		// is something else (the primary lost transactions the archive
		// has, say), and a new generation would not fix it.
		return fmt.Errorf("%w; the primary's oldest binlog %s begins at %q, within the archive (%q), so no transactions are missing: not starting a new generation", cause, o.File, o.Position.String(), from.String())
	}
	gap := &understudy.Gap{From: from, To: o.Position, Detected: time.Now().UTC(), Reason: cause.Error()}
	reason := fmt.Sprintf("after a gap: the primary had purged binlogs the archive still needed; the new generation begins at the oldest position it holds (binlog %s, %q)", o.File, o.Position.String())
	g, err := w.StartGeneration(o.Position, reason, gap)
	if err != nil {
		return fmt.Errorf("starting a new generation: %w", err)
	}
	a.Log.Error("GAP in the archive: the primary purged transactions before they were archived; the generation is closed and a new one begins",
		"generation", g.ID, "from", from.String(), "to", o.Position.String(), "missing", fmt.Sprint(gap.Missing()), "primary_error", cause.Error())
	if a.Metrics != nil {
		a.Metrics.Gaps.WithLabelValues(a.Source.Name).Inc()
	}
	a.generationStarted(g)
	return nil
}

func (a *Archiver) generationStarted(g archive.Generation) {
	if a.Metrics != nil {
		a.Metrics.Generation.WithLabelValues(a.Source.Name).Set(float64(g.ID))
	}
	if a.OnGeneration != nil {
		a.OnGeneration(g)
	}
}

// permanent reports errors that a retry will not fix without a human, by
// their cause: whether they carry a hint does not matter (a refused
// connection has one, and a restarted primary comes back).
func permanent(err error) bool {
	for _, cause := range []error{understudy.ErrPurged, replication.ErrAccessDenied, replication.ErrPrivilege, replication.ErrNoBinlog, replication.ErrServerID} {
		if errors.Is(err, cause) {
			return true
		}
	}
	return false
}

// session checks the primary and streams until an error. progressed says
// whether any transaction was archived, streamed for how long the stream
// was up (from its first event; 0 if none came).
func (a *Archiver) session(ctx context.Context, w *archive.Writer) (progressed bool, streamed time.Duration, err error) {
	info, warnings, err := replication.Check(ctx, a.Source)
	if err != nil {
		return false, 0, err
	}
	for _, msg := range warnings {
		a.Log.Warn(msg)
	}
	a.mu.Lock()
	a.status.PrimaryVersion = info.Version
	a.skew = info.ClockSkew
	a.mu.Unlock()
	a.noteSemiSync(info.SemiSync)
	if !w.Began() {
		if err := a.begin(ctx, w, info); err != nil {
			return false, 0, err
		}
	}
	start := w.Position()
	if a.UntilCaughtUp {
		a.target = info.BinlogPos
		if start.ContainsPosition(a.target) {
			a.finished = true
			return false, 0, nil
		}
	}
	a.Log.Info("streaming", "primary", a.Source.Addr(), "version", info.Version, "from", start.String(), "primary_position", info.BinlogPos.String())
	a.caughtUp = false
	a.firstEvent = time.Time{}
	a.setState(understudy.StateStreaming, nil)
	before := w.Durable().Position
	src := a.Source
	if a.UntilCaughtUp {
		// A one-shot catch-up leaves at once: registered as a semi-sync
		// replica, it would make the primary's next commit wait for its
		// semi-sync timeout, and a semi-sync dump that ends moments after
		// it began can strand a thread on MariaDB that blocks our next
		// dump (docs/replication.md). It acknowledges nothing.
		src.SemiSync = false
	}
	err = replication.Stream(ctx, src, start, a.Log, replication.HandlerFunc(func(ev []byte) error {
		return a.handle(w, ev)
	}))
	progressed = !w.Durable().Position.Equal(before) || !w.Position().Equal(start)
	if !a.firstEvent.IsZero() {
		streamed = time.Since(a.firstEvent)
	}
	if err == nil && ctx.Err() == nil {
		err = errors.New("stream closed")
	}
	return progressed, streamed, err
}

// noteSemiSync records whether the session about to stream acknowledges
// semi-sync: with semi_sync set, replication's stream registers as a
// semi-sync replica exactly when the primary has
// rpl_semi_sync_master_enabled=ON, which Check has just read. A session
// that begins asynchronously after a semi-sync one (or as the first)
// counts as a fallback. The primary's own switch to asynchronous
// replication after rpl_semi_sync_master_timeout, within a session, is not
// seen here (docs/metrics.md).
func (a *Archiver) noteSemiSync(primaryOn bool) {
	if !a.Source.SemiSync {
		return
	}
	a.mu.Lock()
	a.semiSync = primaryOn
	fellBack := !primaryOn && a.semiMode != 2
	a.semiMode = 1
	if !primaryOn {
		a.semiMode = 2
	}
	a.mu.Unlock()
	if fellBack && a.Metrics != nil {
		a.Metrics.SemiSyncFallbacks.WithLabelValues(a.Source.Name).Inc()
	}
}

// handle passes one event of the stream to the archive, and counts and
// acts on what the archive did with it.
func (a *Archiver) handle(w *archive.Writer, ev []byte) error {
	if a.firstEvent.IsZero() {
		a.firstEvent = time.Now()
	}
	r, err := w.Write(ev)
	if r.Kind != archive.Heartbeat {
		a.mu.Lock()
		a.caughtUp = false
		if r.Time != 0 {
			a.lastEvent = r.Time
		}
		a.mu.Unlock()
	}
	if err != nil {
		return err
	}
	switch r.Kind {
	case archive.Heartbeat:
		a.mu.Lock()
		a.caughtUp = true
		a.mu.Unlock()
		// An idle primary after a full disk: nothing new to write
		// proves the room, so the filesystem is asked.
		if a.diskFullNow() && freeBytes(a.Dir) >= 1<<20 {
			a.noteDiskBack()
		}
		// An idle primary: seal an old active file (max_file_age).
		if sealed, err := w.RotateIfDue(); err != nil {
			return err
		} else if sealed {
			a.Log.Debug("sealed an idle archived file", "max_file_age", a.MaxFileAge)
		}
	case archive.Rotate:
		if r.Binlog != "" {
			a.mu.Lock()
			a.status.PrimaryBinlog = r.Binlog
			a.mu.Unlock()
		}
	case archive.Committed:
		if a.Metrics != nil {
			a.Metrics.Transactions.WithLabelValues(a.Source.Name).Inc()
			a.Metrics.TransactionBytes.WithLabelValues(a.Source.Name).Add(float64(r.Record.End - r.Record.Start))
		}
		a.mu.Lock()
		a.status.Transactions++
		a.mu.Unlock()
		if a.OnCommit != nil {
			a.OnCommit(r.Record)
		}
		if a.UntilCaughtUp && w.Position().ContainsPosition(a.target) {
			if err := a.sync(w); err != nil {
				return err
			}
			a.finished = true
			return errFinished
		}
		// Semi-sync: the ACK goes out when this returns, so sync first.
		if a.Source.SemiSync && !a.UntilCaughtUp {
			return a.sync(w)
		}
	}
	return nil
}

func (a *Archiver) sync(w *archive.Writer) error {
	t := time.Now()
	if err := w.Sync(); err != nil {
		var se *archive.SyncError
		if errors.As(err, &se) {
			a.mu.Lock()
			fail := a.fail
			a.mu.Unlock()
			if fail != nil {
				fail(syncFailure{err})
			}
			return syncFailure{err}
		}
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
		before := w.Durable()
		if err := w.Sync(); err != nil {
			var se *archive.SyncError
			if errors.As(err, &se) {
				a.Log.Error("sync archive failed; stopping this source", "err", err)
				fail(syncFailure{err})
				return
			}
			// A failed write (a full disk): end the session, so that the
			// archive is recovered from disk and streaming resumes from
			// what is durable.
			a.endSession(err)
			continue
		}
		if err := w.SealError(); err != nil {
			var se *archive.SyncError
			if errors.As(err, &se) {
				a.Log.Error("fsync of the manifest failed; stopping this source", "err", err)
				fail(syncFailure{err})
				return
			}
			a.endSession(err)
		} else if d := w.Durable(); d.File != before.File || d.Offset != before.Offset {
			a.noteDiskBack() // something new is durable: the disk has room
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

// endSession ends the current streaming session with cause.
func (a *Archiver) endSession(cause error) {
	a.mu.Lock()
	kick := a.kick
	a.mu.Unlock()
	if kick != nil {
		kick(cause)
	}
}

// watchDisk measures the archive's disk: the bytes the source's directory
// uses and the free space of its filesystem, for metrics and status, with
// a warning below the configured minimum.
func (a *Archiver) watchDisk(ctx context.Context) {
	every := a.DiskEvery
	if every <= 0 {
		every = 15 * time.Second
	}
	for {
		a.measureDisk()
		if !sleep(ctx, every) {
			return
		}
	}
}

func (a *Archiver) measureDisk() {
	var st syscall.Statfs_t
	if err := syscall.Statfs(a.Dir, &st); err != nil {
		return
	}
	free, total := st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
	used := dirBytes(a.Dir)
	low := a.LowDisk != nil && a.LowDisk(free, total)
	a.mu.Lock()
	a.status.Disk = &understudy.DiskStatus{UsedBytes: used, FreeBytes: free, TotalBytes: total}
	a.status.Warnings = nil
	if low {
		a.status.Warnings = append(a.status.Warnings, fmt.Sprintf("low disk space: %d of %d bytes free on the archive's filesystem, below archive.min_free %s", free, total, a.MinFree))
	}
	was := a.lowDisk
	a.lowDisk = low
	a.mu.Unlock()
	switch {
	case low && !was:
		a.Log.Warn("low disk space on the archive's filesystem", "free_bytes", free, "total_bytes", total, "min_free", a.MinFree, "dir", a.Dir)
	case !low && was:
		a.Log.Info("disk space on the archive's filesystem is above archive.min_free again", "free_bytes", free, "min_free", a.MinFree)
	}
	if a.Metrics != nil {
		a.Metrics.DiskUsed.WithLabelValues(a.Source.Name).Set(float64(used))
		a.Metrics.DiskFree.WithLabelValues(a.Source.Name).Set(float64(free))
		a.Metrics.DiskSize.WithLabelValues(a.Source.Name).Set(float64(total))
	}
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

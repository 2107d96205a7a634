// Package schedule runs the periodic work of `understudy run` beside the
// archivers: snapshots (every snapshot.every, and a base snapshot as soon
// as a generation begins that has none) and retention's pruning. Each part
// is a Run(ctx) component with an injected logger; what it does to the
// data is injected as functions, so that the timing rules are tested on
// their own.
package schedule

import (
	"context"
	"log/slog"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/snapshot"
)

// Snapshotter takes a source's snapshots.
type Snapshotter struct {
	Source string
	// Every is the period of scheduled snapshots, counted from the newest
	// snapshot; 0: none.
	Every time.Duration
	// OnStart takes a base snapshot as soon as the archive's current
	// generation has none (a new archive, a new generation after a gap, or
	// a base snapshot that failed before a restart).
	OnStart bool
	// Take takes one snapshot.
	Take func(ctx context.Context) (*snapshot.Manifest, error)
	// List lists the source's complete snapshots, oldest first.
	List func() ([]snapshot.Listed, error)
	// Generation returns the start of the archive's current generation;
	// ok is false while the archive has not begun.
	Generation func() (id int, start understudy.Position, ok bool)
	// After, if set, runs after each snapshot (pruning).
	After func(ctx context.Context)
	Log   *slog.Logger
	// Retry is the wait after a failed base snapshot (default 1m); FirstWait
	// the least wait before the first scheduled one (default 30s, to let
	// the archiver connect first).
	Retry, FirstWait time.Duration

	began chan struct{}
}

// NewSnapshotter returns a Snapshotter with default waits.
func NewSnapshotter(source string, log *slog.Logger) *Snapshotter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Snapshotter{Source: source, Log: log.With("source", source), Retry: time.Minute, FirstWait: 30 * time.Second, began: make(chan struct{}, 1)}
}

// GenerationBegan tells the Snapshotter that a generation began: it then
// checks at once whether a base snapshot is due.
func (s *Snapshotter) GenerationBegan() {
	select {
	case s.began <- struct{}{}:
	default:
	}
}

// Run takes snapshots until ctx ends. A failed snapshot is logged and
// tried again after Retry (or Every, if shorter).
func (s *Snapshotter) Run(ctx context.Context) error {
	started := time.Now()
	var retryAt time.Time
	// baseDone holds the generations a base snapshot was taken for: one
	// that still does not cover its generation's start (snapshot.from a
	// replica that lags, say) is not taken again and again.
	baseDone := map[int]bool{}
	for {
		kind, at := s.next(time.Now(), started, retryAt, baseDone)
		if kind == "" {
			select {
			case <-ctx.Done():
				return nil
			case <-s.began:
				continue
			}
		}
		if wait := time.Until(at); wait > 0 {
			s.Log.Info("next snapshot", "kind", kind, "in", wait.Round(time.Second).String())
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-s.began:
			case <-t.C:
			}
			t.Stop()
			continue // decide again: a base snapshot may be due, or no longer
		}
		var gen int
		var genStart understudy.Position
		if kind == kindBase {
			gen, genStart, _ = s.Generation()
			s.Log.Info("taking a base snapshot: the archive's generation has none yet", "generation", gen, "generation_start", genStart.String())
		}
		m, err := s.Take(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			retry := s.Retry
			if s.Every > 0 {
				retry = min(retry, s.Every)
			}
			retryAt = time.Now().Add(retry)
			s.Log.Error("snapshot failed; it is tried again", "kind", kind, "err", err, "retry_in", retry.String())
			continue
		}
		retryAt = time.Time{}
		s.Log.Info("snapshot taken", "kind", kind, "id", m.ID, "gtid_position", m.Position.String())
		if kind == kindBase {
			baseDone[gen] = true
			if !m.Position.ContainsPosition(genStart) {
				s.Log.Warn("the base snapshot does not reach the generation's start (is snapshot.from a replica that lags?); the next one is taken on the schedule",
					"generation", gen, "generation_start", genStart.String(), "snapshot_position", m.Position.String())
			}
		}
		if s.After != nil {
			s.After(ctx)
		}
	}
}

const (
	kindBase      = "base snapshot"
	kindScheduled = "scheduled snapshot"
)

// next says which snapshot is due next and when: a base snapshot at once
// (after a failure, at retryAt) when the current generation has none, and
// a scheduled one Every after the newest snapshot, but not before
// FirstWait (or Every, if shorter) has passed since start. kind is "" when none is due.
func (s *Snapshotter) next(now, started, retryAt time.Time, baseDone map[int]bool) (kind string, at time.Time) {
	snaps, err := s.List()
	if err != nil {
		s.Log.Error("listing snapshots", "err", err)
		return kindScheduled, now.Add(s.Retry)
	}
	if s.OnStart {
		if id, start, ok := s.Generation(); ok && !baseDone[id] && !hasSnapshotFrom(snaps, start) {
			return kindBase, maxTime(now, retryAt)
		}
	}
	if s.Every <= 0 {
		return "", time.Time{}
	}
	at = started.Add(min(s.FirstWait, s.Every))
	if len(snaps) > 0 {
		at = maxTime(at, snaps[len(snaps)-1].Manifest.Started.Add(s.Every))
	}
	return kindScheduled, maxTime(at, retryAt)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// hasSnapshotFrom reports whether a snapshot's position contains start: a
// snapshot of the generation that begins there.
func hasSnapshotFrom(snaps []snapshot.Listed, start understudy.Position) bool {
	for _, l := range snaps {
		if l.Manifest.Position.ContainsPosition(start) {
			return true
		}
	}
	return false
}

// Pruner applies retention periodically and on demand.
type Pruner struct {
	Source string
	// Every is the period of pruning passes (default 5m).
	Every time.Duration
	// Prune runs one pass.
	Prune func(ctx context.Context) error
	Log   *slog.Logger

	now chan struct{}
}

// NewPruner returns a Pruner with the default period.
func NewPruner(source string, prune func(ctx context.Context) error, log *slog.Logger) *Pruner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pruner{Source: source, Every: 5 * time.Minute, Prune: prune, Log: log.With("source", source), now: make(chan struct{}, 1)}
}

// Kick asks for a pass as soon as possible (after a snapshot, say).
func (p *Pruner) Kick() {
	select {
	case p.now <- struct{}{}:
	default:
	}
}

// Run prunes at once, then every Every and on each Kick, until ctx ends.
// A failed pass is logged and tried again at the next turn.
func (p *Pruner) Run(ctx context.Context) error {
	t := time.NewTicker(p.Every)
	defer t.Stop()
	for {
		if err := p.Prune(ctx); err != nil && ctx.Err() == nil {
			p.Log.Error("pruning failed; it is tried again at the next pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.now:
		}
	}
}

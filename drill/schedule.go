package drill

import (
	"context"
	"log/slog"
	"time"
)

// Schedule runs a source's drills in `understudy run` (drill.every): every
// Every, counted from the last drill recorded in the archive, so that a
// drill run from the command line counts too and a restart does not drill
// again at once.
type Schedule struct {
	Source string
	Every  time.Duration
	// Drill runs one drill (Run, with the source's settings).
	Drill func(ctx context.Context) error
	// Last returns the time of the last recorded drill.
	Last func() (time.Time, bool)
	Log  *slog.Logger
	// FirstWait is the least wait after start before the first drill
	// (default 1m, or Every if shorter): the archive connects and a base
	// snapshot is taken first. Retry is the wait after a drill that could
	// not begin and was not recorded (default 10m, or Every if shorter).
	FirstWait, Retry time.Duration
}

// NewSchedule returns a Schedule with the default waits.
func NewSchedule(source string, every time.Duration, drill func(ctx context.Context) error, last func() (time.Time, bool), log *slog.Logger) *Schedule {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Schedule{Source: source, Every: every, Drill: drill, Last: last, Log: log.With("source", source),
		FirstWait: time.Minute, Retry: 10 * time.Minute}
}

// Run drills until ctx ends. A drill that fails is logged by Drill and
// recorded; one that could not begin is logged here and tried again after
// Retry.
func (s *Schedule) Run(ctx context.Context) error {
	started := time.Now()
	var retryAt time.Time
	for {
		at := s.next(started, retryAt)
		if wait := time.Until(at); wait > 0 {
			s.Log.Info("next drill", "in", wait.Round(time.Second).String())
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue // decide again: a drill from the command line may have run meanwhile
		}
		began := time.Now()
		err := s.Drill(ctx)
		if ctx.Err() != nil {
			return nil
		}
		retryAt = time.Time{}
		if err != nil {
			if last, ok := s.Last(); !ok || last.Before(began) {
				retry := min(s.Retry, s.Every)
				retryAt = time.Now().Add(retry)
				s.Log.Warn("the drill could not run; it is tried again", "err", err, "retry_in", retry.String())
			}
		}
	}
}

// next is when the next drill is due: Every after the last recorded one,
// not before FirstWait (or Every, if shorter) has passed since start, nor
// before retryAt.
func (s *Schedule) next(started, retryAt time.Time) time.Time {
	at := started.Add(min(s.FirstWait, s.Every))
	if last, ok := s.Last(); ok && last.Add(s.Every).After(at) {
		at = last.Add(s.Every)
	}
	if retryAt.After(at) {
		at = retryAt
	}
	return at
}

package archive

import "github.com/understudy-db/understudy"

// Step is what a reader of the archive does with one transaction on its
// way to a stop point.
type Step int

const (
	// Apply replays the transaction and goes on.
	Apply Step = iota
	// Skip leaves the transaction out and goes on: with --until-gtid, a
	// transaction of a domain that the point does not include, or whose
	// point that domain has passed, while another domain has not reached
	// its point yet.
	Skip
	// Stop leaves the transaction and everything after it out: the stop
	// point lies before it.
	Stop
)

// Walker applies a stop point to transactions in archive order. It is the
// one place where a stop point is walked: export, restore planning and the
// binlog server all use it, so that they agree on every transaction.
type Walker struct {
	stop    understudy.StopPoint
	reached understudy.Position
	done    bool
}

// NewWalker starts a walk from the position from (what the target already
// has) towards stop.
func NewWalker(stop understudy.StopPoint, from understudy.Position) *Walker {
	w := &Walker{stop: stop, reached: from}
	w.done = !stop.UntilGTID.IsZero() && from.ContainsPosition(stop.UntilGTID)
	return w
}

// Next says what to do with the transaction g committed at unix time t. An
// applied transaction counts as reached.
func (w *Walker) Next(g understudy.GTID, t uint32) Step {
	if w.done {
		return Stop
	}
	include, done := w.stop.Decide(g, t, w.reached)
	switch {
	case include:
		w.reached = w.reached.With(g)
		w.done = done
		return Apply
	case done:
		w.done = true
		return Stop
	}
	return Skip
}

// Done reports whether the stop point is met: nothing after it applies.
func (w *Walker) Done() bool { return w.done }

// Reached is the starting position plus every applied transaction.
func (w *Walker) Reached() understudy.Position { return w.reached }

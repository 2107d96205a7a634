package archive

import (
	"testing"
	"time"

	"github.com/understudy-db/understudy"
)

// TestWalkerTwoDomains: with --until-gtid over two domains, a transaction
// of a domain that has passed its point is skipped, not a reason to stop,
// until every domain has reached its point.
func TestWalkerTwoDomains(t *testing.T) {
	g := func(d uint32, seq uint64) understudy.GTID { return understudy.GTID{Domain: d, ServerID: 1, Seq: seq} }
	until := pos(t, "1-1-4,2-1-2")
	w := NewWalker(understudy.StopPoint{UntilGTID: until}, pos(t, "1-1-1,2-1-1"))
	for i, tc := range []struct {
		g    understudy.GTID
		want Step
		done bool
	}{
		{g(1, 2), Apply, false},
		{g(2, 2), Apply, false}, // domain 2 reaches its point
		{g(2, 3), Skip, false},  // beyond it, while domain 1 has not
		{g(3, 1), Skip, false},  // a domain the point does not name
		{g(1, 3), Apply, false},
		{g(2, 4), Skip, false},
		{g(1, 4), Apply, true}, // every domain is there
		{g(1, 5), Stop, true},
	} {
		if got := w.Next(tc.g, 0); got != tc.want || w.Done() != tc.done {
			t.Fatalf("step %d (%s): %v, done %v; want %v, done %v", i, tc.g, got, w.Done(), tc.want, tc.done)
		}
	}
	if got := w.Reached().String(); got != "1-1-4,2-1-2" {
		t.Fatalf("reached %s", got)
	}
	// Already there: nothing applies.
	if w := NewWalker(understudy.StopPoint{UntilGTID: until}, until); !w.Done() || w.Next(g(1, 5), 0) != Stop {
		t.Fatal("a walk that starts at its point applies something")
	}
	// --until-time stops at the first later commit; --before-gtid at the GTID.
	tw := NewWalker(understudy.StopPoint{UntilTime: time.Unix(100, 0)}, understudy.Position{})
	if tw.Next(g(1, 1), 100) != Apply || tw.Next(g(2, 1), 101) != Stop || tw.Next(g(1, 2), 99) != Stop {
		t.Fatal("until-time walk")
	}
	bw := NewWalker(understudy.StopPoint{BeforeGTID: g(1, 3)}, understudy.Position{})
	if bw.Next(g(1, 2), 0) != Apply || bw.Next(g(2, 9), 0) != Apply || bw.Next(g(1, 3), 0) != Stop {
		t.Fatal("before-gtid walk")
	}
	// No stop point: everything applies.
	nw := NewWalker(understudy.StopPoint{}, understudy.Position{})
	if nw.Next(g(1, 1), 0) != Apply || nw.Done() {
		t.Fatal("walk without a stop point")
	}
}

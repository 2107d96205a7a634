package understudy

import (
	"testing"
	"time"
)

func TestStopPointDecide(t *testing.T) {
	g := func(d uint32, seq uint64) GTID { return GTID{Domain: d, ServerID: 1, Seq: seq} }
	until, _ := ParsePosition("0-1-5,1-1-2")
	s := StopPoint{UntilGTID: until}
	reached := Position{}
	type step struct {
		g             GTID
		include, done bool
	}
	for i, st := range []step{
		{g(0, 4), true, false},
		{g(1, 2), true, false},
		{g(2, 1), false, false}, // domain not in the stop point
		{g(0, 5), true, true},
		{g(0, 6), false, false},
	} {
		inc, done := s.Decide(st.g, 0, reached)
		if inc != st.include || done != st.done {
			t.Fatalf("step %d (%s): include=%v done=%v, want %v %v", i, st.g, inc, done, st.include, st.done)
		}
		if inc {
			reached = reached.With(st.g)
		}
	}
	at := time.Unix(1000, 0)
	ts := StopPoint{UntilTime: at}
	if inc, done := ts.Decide(g(0, 1), 1000, Position{}); !inc || done {
		t.Fatalf("commit at the stop time: include=%v done=%v", inc, done)
	}
	if inc, done := ts.Decide(g(0, 2), 1001, Position{}); inc || !done {
		t.Fatalf("commit after the stop time: include=%v done=%v", inc, done)
	}
	bs := StopPoint{BeforeGTID: g(0, 3)}
	if inc, done := bs.Decide(g(0, 2), 0, Position{}); !inc || done {
		t.Fatal("before-gtid excluded an earlier transaction")
	}
	if inc, done := bs.Decide(g(0, 3), 0, Position{}); inc || !done {
		t.Fatal("before-gtid included the GTID itself")
	}
	if err := (StopPoint{UntilGTID: until, BeforeGTID: g(0, 1)}).Validate(); err == nil {
		t.Fatal("two limits accepted")
	}
}

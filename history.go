package understudy

import "time"

// Gap is a stretch of a source's history that the archive does not hold:
// the primary purged binlogs that understudy had not archived yet (it was
// down, say). The archive closes the generation that ends at From and
// starts a new one at To.
type Gap struct {
	// Generation is the generation that begins after the gap.
	Generation int `json:"generation"`
	// From is the archive position when the gap was found: the end of the
	// previous generation.
	From Position `json:"from"`
	// To is where the new generation begins: the oldest position the
	// primary still held.
	To Position `json:"to"`
	// Detected is when understudy found the gap.
	Detected time.Time `json:"detected"`
	// Reason is what the primary said.
	Reason string `json:"reason"`
}

// Missing returns, per domain, how many transactions the gap skips
// (sequence numbers between From and To).
func (g Gap) Missing() map[uint32]uint64 {
	out := map[uint32]uint64{}
	for _, t := range g.To.GTIDs() {
		f, _ := g.From.Domain(t.Domain)
		if t.Seq > f.Seq {
			out[t.Domain] = t.Seq - f.Seq
		}
	}
	return out
}

// Window is a stretch of a source's history that can be restored: every
// point from From to To. A window that rests on a snapshot whose
// following binlogs are gone (kept by a grandfather-father-son policy, say)
// holds one point only, the snapshot's position: PointOnly is then set and
// From equals To.
type Window struct {
	Generation int `json:"generation"`
	// Snapshot is the oldest snapshot the window rests on.
	Snapshot string    `json:"snapshot"`
	From     Position  `json:"from"`
	FromTime time.Time `json:"from_time"`
	To       Position  `json:"to"`
	// ToTime is the commit time of the last durable transaction of the
	// window (the snapshot's time for a point-only window).
	ToTime    time.Time `json:"to_time"`
	PointOnly bool      `json:"point_only,omitempty"`
}

// String describes the window in one line.
func (w Window) String() string {
	if w.PointOnly {
		return "snapshot " + w.Snapshot + " only (GTID " + w.From.String() + ", " + w.FromTime.UTC().Format(time.RFC3339) + ")"
	}
	return w.FromTime.UTC().Format(time.RFC3339) + " (GTID " + w.From.String() + ") to " + w.ToTime.UTC().Format(time.RFC3339) + " (GTID " + w.To.String() + ")"
}

package understudy

import (
	"fmt"
	"time"
)

// StopPoint says where a replay of the archive ends. The zero StopPoint
// means "everything archived".
type StopPoint struct {
	// UntilGTID includes every transaction contained in the position, the
	// MariaDB way: inclusive, and a domain missing from it is not replayed.
	UntilGTID Position
	// UntilTime includes transactions committed at or before it and stops at
	// the first one committed later.
	UntilTime time.Time
	// BeforeGTID includes everything before this transaction and stops there.
	BeforeGTID GTID
}

// IsZero reports whether s sets no limit.
func (s StopPoint) IsZero() bool {
	return s.UntilGTID.IsZero() && s.UntilTime.IsZero() && s.BeforeGTID.IsZero()
}

// Validate rejects a stop point that sets more than one limit.
func (s StopPoint) Validate() error {
	n := 0
	for _, set := range []bool{!s.UntilGTID.IsZero(), !s.UntilTime.IsZero(), !s.BeforeGTID.IsZero()} {
		if set {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("give only one of --until-gtid, --until-time and --before-gtid")
	}
	return nil
}

func (s StopPoint) String() string {
	switch {
	case !s.UntilGTID.IsZero():
		return "until GTID " + s.UntilGTID.String()
	case !s.UntilTime.IsZero():
		return "until " + s.UntilTime.UTC().Format(time.RFC3339)
	case !s.BeforeGTID.IsZero():
		return "before GTID " + s.BeforeGTID.String()
	}
	return "to the end of the archive"
}

// Decide says whether the transaction g, committed at unix time t, is
// replayed, and whether the replay ends with it. reached is the position
// replayed so far (including g when include is true).
func (s StopPoint) Decide(g GTID, t uint32, reached Position) (include, done bool) {
	switch {
	case !s.UntilGTID.IsZero():
		if !s.UntilGTID.Contains(g) {
			return false, false
		}
		return true, reached.With(g).ContainsPosition(s.UntilGTID)
	case !s.UntilTime.IsZero():
		if int64(t) > s.UntilTime.Unix() {
			return false, true
		}
		return true, false
	case !s.BeforeGTID.IsZero():
		if g == s.BeforeGTID {
			return false, true
		}
		return true, false
	}
	return true, false
}

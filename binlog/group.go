package binlog

import (
	"fmt"
)

// Step says where an event stands with respect to transaction groups.
type Step int

const (
	// Meta is an event outside any group that a binlog file or stream carries
	// for itself: format description, rotate, GTID list, binlog checkpoint,
	// heartbeat, stop, start encryption. The archive writes its own.
	Meta Step = iota
	// Begin is a GTID event: it opens a group.
	Begin
	// Inside is an event of an open group that does not end it.
	Inside
	// End is the last event of a group: the group is whole.
	End
	// Single is an event outside any group that stands alone, such as an
	// INCIDENT event. It is kept as a unit of its own.
	Single
)

// Grouper follows the transaction grouping rules of a MariaDB replica IO
// thread (slave.cc: is_part_of_group, is_group_ending): a group is a GTID
// event and what follows up to an XID, an XA PREPARE or a COMMIT/ROLLBACK
// query; a standalone group (FL_STANDALONE) ends with its first event that is
// not a prefix event (INTVAR, RAND, USER_VAR, TABLE_MAP, ANNOTATE_ROWS).
type Grouper struct {
	in         bool
	standalone bool
}

// InGroup reports whether a group is open.
func (g *Grouper) InGroup() bool { return g.in }

// Reset forgets an open group.
func (g *Grouper) Reset() { *g = Grouper{} }

// Next classifies the next event. checksum says whether ev ends in a CRC32.
func (g *Grouper) Next(ev []byte, checksum bool) (Step, error) {
	if len(ev) < HeaderSize {
		return 0, fmt.Errorf("event of %d bytes is shorter than its header", len(ev))
	}
	typ := ev[4]
	switch typ {
	case FormatDescriptionEvent, RotateEvent, GTIDListEvent, BinlogCheckpointEvent, HeartbeatEvent, StopEvent, StartEncryptionEvent:
		if g.in {
			return 0, fmt.Errorf("%s event inside a transaction group", TypeName(typ))
		}
		return Meta, nil
	case GTIDEvent:
		if g.in {
			return 0, fmt.Errorf("GTID event inside an open transaction group")
		}
		b := Body(ev, checksum)
		if len(b) < 13 {
			return 0, fmt.Errorf("GTID event too short")
		}
		g.in, g.standalone = true, b[12]&GTIDStandalone != 0
		return Begin, nil
	}
	if !g.in {
		return Single, nil
	}
	if g.standalone {
		switch typ {
		case IntvarEvent, RandEvent, UserVarEvent, TableMapEvent, AnnotateRowsEvent:
			return Inside, nil
		}
		g.in = false
		return End, nil
	}
	switch typ {
	case XIDEvent, XAPrepareEvent:
		g.in = false
		return End, nil
	case QueryEvent:
		_, sql, err := queryText(ev, checksum)
		if err != nil {
			return 0, err
		}
		if isGroupEnd(sql) {
			g.in = false
			return End, nil
		}
	}
	return Inside, nil
}

// isGroupEnd reports whether a statement ends a group: COMMIT, ROLLBACK,
// or one that starts with XA COMMIT or XA ROLLBACK (in any case). It does
// not allocate: it runs for every QUERY event of the stream.
func isGroupEnd(sql []byte) bool {
	switch string(sql) {
	case "COMMIT", "ROLLBACK":
		return true
	}
	return hasPrefixFold(sql, "XA COMMIT") || hasPrefixFold(sql, "XA ROLLBACK")
}

// hasPrefixFold reports whether b starts with the upper-case ASCII prefix,
// ignoring the case of ASCII letters.
func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

package binlog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/understudy-db/understudy"
)

// fixture is a binlog written by MariaDB 10.11 (domain 3, server 7): DDL,
// an InnoDB insert, a MyISAM insert (BEGIN ... COMMIT query), an update and
// a rotate.
func fixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/mariadb-10.11.bin")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type group struct {
	gtid   understudy.GTID
	events int
}

func readGroups(t *testing.T, b []byte) (fde []byte, groups []group) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var g Grouper
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return r.FormatDescription, groups
		}
		if err != nil {
			t.Fatal(err)
		}
		step, err := g.Next(ev, r.Checksum())
		if err != nil {
			t.Fatal(err)
		}
		switch step {
		case Begin:
			gi, err := ParseGTIDEvent(ev, r.Checksum())
			if err != nil {
				t.Fatal(err)
			}
			groups = append(groups, group{gtid: gi.GTID, events: 1})
		case Inside:
			groups[len(groups)-1].events++
		case End:
			groups[len(groups)-1].events++
			if g.InGroup() {
				t.Fatal("group still open after End")
			}
		case Single:
			t.Fatalf("unexpected single event %s", TypeName(ev[4]))
		}
	}
}

func TestReadFixture(t *testing.T) {
	fde, groups := readGroups(t, fixture(t))
	fd, err := ParseFormatDescription(fde)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fd.ChecksumAlg, byte(ChecksumCRC32); got != want {
		t.Fatalf("checksum alg %d, want %d", got, want)
	}
	if got, want := fd.ServerVersion, "10.11.14-MariaDB-0+deb12u2-log"; got != want {
		t.Fatalf("server version %q, want %q", got, want)
	}
	// 4 DDL (GTID + query), InnoDB insert (GTID, annotate, table map, rows,
	// XID), DDL, MyISAM insert (ending in a COMMIT query), update.
	wantEvents := []int{2, 2, 2, 2, 5, 2, 5, 5}
	if got, want := len(groups), len(wantEvents); got != want {
		t.Fatalf("%d groups, want %d", got, want)
	}
	for i, g := range groups {
		if want := (understudy.GTID{Domain: 3, ServerID: 7, Seq: uint64(i + 1)}); g.gtid != want {
			t.Errorf("group %d: GTID %s, want %s", i, g.gtid, want)
		}
		if g.events != wantEvents[i] {
			t.Errorf("group %d (%s): %d events, want %d", i, g.gtid, g.events, wantEvents[i])
		}
	}
}

func TestWriterRewritesPositions(t *testing.T) {
	b := fixture(t)
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var w *Writer
	start := understudy.NewPosition(understudy.GTID{Domain: 3, ServerID: 7, Seq: 0})
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev[4] {
		case FormatDescriptionEvent:
			w = NewWriter(&out, 0, true)
			if err := w.WriteHeader(ev, start, 0); err != nil {
				t.Fatal(err)
			}
		case GTIDListEvent, BinlogCheckpointEvent, RotateEvent:
		default:
			if err := w.WriteEvent(ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Read the copy back: every CRC verifies and every log_pos is the end
	// offset of its event.
	r2, err := NewReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		off := r2.Offset()
		ev, err := r2.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("copy: %v", err)
		}
		h, _ := ParseHeader(ev)
		if got, want := int64(h.LogPos), off+int64(h.Size); got != want {
			t.Fatalf("event %d (%s): log_pos %d, want %d", n, TypeName(h.Type), got, want)
		}
		if n == 1 {
			pos, err := ParseGTIDList(ev, true)
			if err != nil || !pos.Equal(start) {
				t.Fatalf("GTID list %v %v, want %s", pos, err, start)
			}
		}
		n++
	}
	if got, want := int64(out.Len()), w.Offset(); got != want {
		t.Fatalf("wrote %d bytes, Offset %d", got, want)
	}
	_, groups := readGroups(t, out.Bytes())
	if got, want := len(groups), 8; got != want {
		t.Fatalf("copy has %d groups, want %d", got, want)
	}
}

func TestCorruptionDetected(t *testing.T) {
	b := fixture(t)
	bad := append([]byte(nil), b...)
	bad[1100] ^= 0xff // inside the first Table_map event
	r, err := NewReader(bytes.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err = r.Next()
		if err != nil {
			break
		}
	}
	if !errors.Is(err, understudy.ErrCorrupt) || !errors.Is(err, ErrChecksum) && !bytes.Contains([]byte(err.Error()), []byte("checksum")) {
		t.Fatalf("flipped byte gave %v, want a checksum error", err)
	}
	r, _ = NewReader(bytes.NewReader(b[:1000]))
	for {
		_, err = r.Next()
		if err != nil {
			break
		}
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated file gave %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := NewReader(bytes.NewReader([]byte("not a binlog"))); !errors.Is(err, ErrNotBinlog) {
		t.Fatalf("bad magic gave %v", err)
	}
}

func TestQueryAndRotate(t *testing.T) {
	r, _ := NewReader(bytes.NewReader(fixture(t)))
	var queries []string
	var rotate string
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		switch ev[4] {
		case QueryEvent:
			q, err := ParseQuery(ev, true)
			if err != nil {
				t.Fatal(err)
			}
			queries = append(queries, q.SQL)
		case RotateEvent:
			rotate, _, _ = ParseRotate(ev, true)
		}
	}
	if got, want := queries[2], "CREATE DATABASE fx"; got != want {
		t.Fatalf("third query %q, want %q", got, want)
	}
	if got, want := queries[len(queries)-1], "COMMIT"; got != want {
		t.Fatalf("last query %q, want %q", got, want)
	}
	if got, want := rotate, "mariadb-bin.000002"; got != want {
		t.Fatalf("rotate to %q, want %q", got, want)
	}
}

func TestReplaceQuery(t *testing.T) {
	sql := "CREATE DEFINER=`root`@`localhost` PROCEDURE `b`.`pb`() SELECT 1"
	body := make([]byte, 13)
	body[8] = 1 // database length
	body = append(append(body, "a\x00"...), sql...)
	ev := NewEvent(Header{Timestamp: 7, Type: QueryEvent, ServerID: 1, LogPos: 999}, body, true)
	out, err := ReplaceQuery(ev, true, "DO 0")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(ev) {
		t.Fatalf("size %d, want %d", len(out), len(ev))
	}
	if err := VerifyChecksum(out); err != nil {
		t.Fatal(err)
	}
	q, err := ParseQuery(out, true)
	if err != nil || q.Database != "a" || strings.TrimRight(q.SQL, " ") != "DO 0" || len(q.SQL) != len(sql) {
		t.Fatalf("replaced: %+v, %v", q, err)
	}
	if h, _ := ParseHeader(out); h.LogPos != 999 {
		t.Fatalf("log_pos %d", h.LogPos)
	}
	if q0, _ := ParseQuery(ev, true); q0.SQL != sql {
		t.Fatal("the original event was changed")
	}
	if _, err := ReplaceQuery(ev, true, strings.Repeat("x", len(sql)+1)); err == nil {
		t.Fatal("a longer statement was accepted")
	}
}

// queryEvent builds a QUERY event with a CRC32 for statement sql in db.
func queryEvent(db, sql string) []byte {
	body := make([]byte, 13, 13+len(db)+1+len(sql))
	body[8] = byte(len(db))
	body = append(append(append(body, db...), 0), sql...)
	return NewEvent(Header{Timestamp: 1795363200, Type: QueryEvent, ServerID: 7}, body, true)
}

// TestGroupEnd: the statements that end a (non-standalone) group, read
// without allocating.
func TestGroupEnd(t *testing.T) {
	gtid := NewEvent(Header{Type: GTIDEvent, ServerID: 7}, make([]byte, 19), true) // flags 0: not standalone
	for _, tc := range []struct {
		sql string
		end bool
	}{
		{"COMMIT", true},
		{"ROLLBACK", true},
		{"XA COMMIT X'31',X'',1", true},
		{"xa rollback X'31',X'',1", true},
		{"XA END X'31',X'',1", false},
		{"XA COMMI", false},
		{"COMMIT ", false},
		{"INSERT INTO t VALUES (1)", false},
	} {
		var g Grouper
		if step, err := g.Next(gtid, true); err != nil || step != Begin {
			t.Fatalf("GTID event: %v, %v", step, err)
		}
		q := queryEvent("app", tc.sql)
		step, err := g.Next(q, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := step == End; got != tc.end {
			t.Errorf("%q ends the group: %v, want %v", tc.sql, got, tc.end)
		}
	}
	q := queryEvent("app", "COMMIT")
	if n := testing.AllocsPerRun(100, func() {
		var g Grouper
		g.Next(gtid, true)
		g.Next(q, true)
	}); n != 0 {
		t.Fatalf("grouping a transaction allocates %v times", n)
	}
}

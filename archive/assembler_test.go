package archive

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// stream is a replication stream as a primary sends it: the artificial
// ROTATE and the format description that begin it, the primary's own GTID
// list and checkpoint, then transactions of every kind (DDL, XID-ended,
// COMMIT-ended), with a heartbeat, an INCIDENT and a transaction sent twice
// among them.
func stream(t *testing.T) [][]byte {
	t.Helper()
	fde, groups := fixtureGroups(t)
	rotate := make([]byte, 8, 32)
	binary.LittleEndian.PutUint64(rotate, 4)
	rotate = append(rotate, "mariadb-bin.000042"...)
	evs := [][]byte{
		binlog.NewEvent(binlog.Header{Type: binlog.RotateEvent, ServerID: 7, Flags: binlog.FlagArtificial}, rotate, false),
		fde,
		binlog.NewEvent(binlog.Header{Timestamp: 1795363200, Type: binlog.GTIDListEvent, ServerID: 7}, binlog.GTIDListBody(understudy.Position{}, 0), true),
		binlog.NewEvent(binlog.Header{Timestamp: 1795363200, Type: binlog.BinlogCheckpointEvent, ServerID: 7}, []byte{4, 0, 0, 0, 'b', 'i', 'n', '1'}, true),
	}
	heartbeat := binlog.NewEvent(binlog.Header{Type: binlog.HeartbeatEvent, ServerID: 7, Flags: binlog.FlagArtificial}, []byte("mariadb-bin.000042"), true)
	seq := uint64(0)
	add := func(g [][]byte, s uint64) {
		g = append([][]byte(nil), g...)
		g[0] = withSeq(g[0], s)
		evs = append(evs, g...)
	}
	for i := range 16 {
		seq++
		add(groups[i%len(groups)], seq)
		switch i {
		case 3:
			evs = append(evs, heartbeat)
		case 8:
			add(groups[4], 5) // sent again: skipped
		case 11, 13:
			evs = append(evs, incident())
		}
	}
	return evs
}

// unit is a unit of the archived file, as the live path reports it: where
// it ends, and the transaction it completes (if it is one).
type unit struct {
	end int64
	rec *Record
}

// TestRecoveryAgreesWithStream feeds one stream to the live path
// (Writer.Write), then cuts the file it wrote at every byte inside its
// last transactions and recovers it: recovery finds exactly the
// transactions the live path committed before the cut, ends the file after
// the last whole unit, and resumes at the position after the last whole
// transaction.
func TestRecoveryAgreesWithStream(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var units []unit
	var kinds []Kind
	for _, ev := range stream(t) {
		r, err := w.Write(ev)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, r.Kind)
		switch r.Kind {
		case Committed:
			rec := r.Record
			if int64(rec.End) != w.committed {
				t.Fatalf("transaction %s ends at %d, the file's last unit at %d", rec.GTID, rec.End, w.committed)
			}
			units = append(units, unit{end: int64(rec.End), rec: &rec})
		case Alone:
			units = append(units, unit{end: w.committed})
		case Rotate:
			if r.Binlog != "mariadb-bin.000042" {
				t.Fatalf("rotate names %q", r.Binlog)
			}
		}
	}
	count := map[Kind]int{}
	for _, k := range kinds {
		count[k]++
	}
	if count[Committed] != 16 || count[Alone] != 2 || count[Heartbeat] != 1 || count[Rotate] != 1 || count[Format] != 1 || count[Meta] != 2 || count[Skipped] == 0 {
		t.Fatalf("kinds of the stream's events: %v", count)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	crash(w)
	path := filepath.Join(dir, FileName(1))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(path + indexSuffix)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	header := h.end

	// Recovery's scan of the whole file finds the live path's transactions.
	res := scanRange(f, header, int64(len(data)), h.checksum, 0)
	var live []Record
	for _, u := range units {
		if u.rec != nil {
			live = append(live, *u.rec)
		}
	}
	if res.torn != nil || res.end != int64(len(data)) || len(res.records) != len(live) {
		t.Fatalf("scan of the whole file: %d records to %d (torn: %v), want %d to %d", len(res.records), res.end, res.torn, len(live), len(data))
	}
	for i := range live {
		if res.records[i] != live[i] {
			t.Fatalf("record %d: scan %+v, live %+v", i, res.records[i], live[i])
		}
	}

	// Cut inside the last transactions (and the INCIDENTs among them),
	// with the index holding what was durable before them.
	from := units[len(units)-5]
	kept := 0
	for _, u := range units {
		if u.rec != nil && u.end <= from.end {
			kept++
		}
	}
	for cut := from.end; cut <= int64(len(data)); cut++ {
		d := filepath.Join(t.TempDir(), "cut")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, FileName(1))
		if err := os.WriteFile(p, data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+indexSuffix, idx[:kept*RecordSize], 0o600); err != nil {
			t.Fatal(err)
		}
		want := understudy.Position{}
		var last *Record
		end := header
		for _, u := range units {
			if u.end > cut {
				break
			}
			end = u.end
			if u.rec != nil {
				want, last = want.With(u.rec.GTID), u.rec
			}
		}
		w, err := OpenWriter(d, WriterOptions{})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		got := w.Position()
		w.Close()
		if !got.Equal(want) {
			t.Fatalf("cut at %d: recovered position %s, the live path committed %s", cut, got, want)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != end {
			t.Fatalf("cut at %d: recovery ends the file at %d, the live path's last whole unit ends at %d", cut, st.Size(), end)
		}
		b, err := os.ReadFile(p + indexSuffix)
		if err != nil {
			t.Fatal(err)
		}
		recs := parseIndex(b, st.Size())
		if len(recs) == 0 || recs[len(recs)-1] != *last {
			t.Fatalf("cut at %d: recovered index ends with %+v, the live path's last transaction is %+v", cut, recs[len(recs)-1:], *last)
		}
	}
}

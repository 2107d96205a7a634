package archive

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// fixtureGroups returns the format description and the transactions of the
// binlog fixture written by MariaDB 10.11 (GTIDs 3-7-1 .. 3-7-8).
func fixtureGroups(t *testing.T) ([]byte, [][][]byte) {
	t.Helper()
	b, err := os.ReadFile("../binlog/testdata/mariadb-10.11.bin")
	if err != nil {
		t.Fatal(err)
	}
	r, err := binlog.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var g binlog.Grouper
	var fde []byte
	var groups [][][]byte
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return fde, groups
		}
		if err != nil {
			t.Fatal(err)
		}
		ev = append([]byte(nil), ev...)
		step, err := g.Next(ev, true)
		if err != nil {
			t.Fatal(err)
		}
		switch step {
		case binlog.Meta:
			if ev[4] == binlog.FormatDescriptionEvent {
				fde = ev
			}
		case binlog.Begin:
			groups = append(groups, [][]byte{ev})
		default:
			groups[len(groups)-1] = append(groups[len(groups)-1], ev)
		}
	}
}

func writeGroup(t *testing.T, w *Writer, g [][]byte) {
	t.Helper()
	for i, ev := range g {
		r, err := w.Write(ev)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]Kind{false: Appended, true: Committed}[i == len(g)-1]; r.Kind != want {
			t.Fatalf("event %d of %d of a transaction: %s, want %s", i+1, len(g), r.Kind, want)
		}
	}
}

// write writes events that are no transaction's (a format description, an
// INCIDENT).
func write(t *testing.T, w *Writer, ev []byte) {
	t.Helper()
	if _, err := w.Write(ev); err != nil {
		t.Fatal(err)
	}
}

// crash drops the writer without syncing or truncating anything, as
// kill -9 would, and releases the lock.
func crash(w *Writer) {
	w.bw.Flush() // what the OS already had
	w.closeFiles()
	w.lock.Close()
}

func pos(t *testing.T, s string) understudy.Position {
	p, err := understudy.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriterRecoversTornTail(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, fde)
	for _, g := range groups[:5] {
		writeGroup(t, w, g)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	// half of transaction 6, then a crash
	write(t, w, groups[5][0])
	crash(w)
	path := filepath.Join(dir, FileName(1))
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{0, 0, 0, 0, 0, 0, 0}) // a torn page of zeros
	f.Close()

	w, err = OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.Position(), pos(t, "3-7-5"); !got.Equal(want) {
		t.Fatalf("position after recovery %s, want %s", got, want)
	}
	// resume: the rest of the stream appends cleanly
	for _, g := range groups[5:] {
		writeGroup(t, w, g)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.Position(), pos(t, "3-7-8"); !got.Equal(want) {
		t.Fatalf("archive position %s, want %s", got, want)
	}
	recs, err := a.Records(a.Files()[0])
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if r.GTID.Seq != uint64(i+1) {
			t.Fatalf("record %d is %s", i, r.GTID)
		}
	}
	if got, want := len(recs), 8; got != want {
		t.Fatalf("%d records, want %d", got, want)
	}
}

func TestWriterRebuildsLostIndex(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, _ := OpenWriter(dir, WriterOptions{})
	write(t, w, fde)
	for _, g := range groups {
		writeGroup(t, w, g)
	}
	w.Sync()
	crash(w)
	// The data was synced but the index lost its last records and got a
	// torn one.
	idx := filepath.Join(dir, FileName(1)+indexSuffix)
	b, _ := os.ReadFile(idx)
	os.WriteFile(idx, append(b[:3*RecordSize], 1, 2, 3), 0o644)
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.Position(), pos(t, "3-7-8"); !got.Equal(want) {
		t.Fatalf("position %s, want %s", got, want)
	}
	w.Close()
	a, _ := Open(dir)
	recs, _ := a.Records(a.Files()[0])
	if got, want := len(recs), 8; got != want {
		t.Fatalf("%d records after rebuild, want %d", got, want)
	}
}

func TestRotationManifestAndExport(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, _ := OpenWriter(dir, WriterOptions{MaxFileSize: 600})
	write(t, w, fde)
	for _, g := range groups {
		writeGroup(t, w, g)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := a.Files()
	if len(files) < 3 {
		t.Fatalf("%d files, want rotation into several", len(files))
	}
	var total int64
	for i, fi := range files[:len(files)-1] {
		if !fi.Sealed || fi.SHA256 == "" {
			t.Fatalf("file %s not sealed", fi.Name)
		}
		sum, _ := FileSHA256(filepath.Join(dir, fi.Name))
		if sum != fi.SHA256 {
			t.Fatalf("%s: sha256 %s in manifest, %s on disk", fi.Name, fi.SHA256, sum)
		}
		if !files[i+1].StartPosition.Equal(fi.EndPosition) {
			t.Fatalf("%s ends at %s but %s starts at %s", fi.Name, fi.EndPosition, files[i+1].Name, files[i+1].StartPosition)
		}
		total += fi.Transactions
	}
	total += files[len(files)-1].Transactions
	if total != 8 {
		t.Fatalf("%d transactions in all files, want 8", total)
	}
	// export up to 3-7-6 inclusive, and before 3-7-4
	for _, tc := range []struct {
		stop understudy.StopPoint
		want string
		n    int64
	}{
		{understudy.StopPoint{UntilGTID: pos(t, "3-7-6")}, "3-7-6", 6},
		{understudy.StopPoint{BeforeGTID: understudy.GTID{Domain: 3, ServerID: 7, Seq: 4}}, "3-7-3", 3},
		{understudy.StopPoint{}, "3-7-8", 8},
	} {
		out := t.TempDir()
		res, err := Export(a, out, tc.stop)
		if err != nil {
			t.Fatal(err)
		}
		if res.Position.String() != tc.want || res.Transactions != tc.n {
			t.Fatalf("%s: exported %d to %s, want %d to %s", tc.stop, res.Transactions, res.Position, tc.n, tc.want)
		}
		var seen int
		for _, name := range res.Files {
			b, _ := os.ReadFile(filepath.Join(out, name))
			r, err := binlog.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			for {
				ev, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if ev[4] == binlog.GTIDEvent {
					seen++
				}
			}
		}
		if int64(seen) != tc.n {
			t.Fatalf("%s: %d GTID events in exported files, want %d", tc.stop, seen, tc.n)
		}
	}
	if _, err := Export(a, t.TempDir(), understudy.StopPoint{BeforeGTID: understudy.GTID{Domain: 9, ServerID: 1, Seq: 1}}); err == nil {
		t.Fatal("export before a GTID that is not archived succeeded")
	}
	// A GTID whose sequence number is archived with another server_id:
	// refused before anything is written (the whole archive would be
	// exported, the bad transaction with it).
	out := t.TempDir()
	if _, err := Export(a, out, understudy.StopPoint{BeforeGTID: understudy.GTID{Domain: 3, ServerID: 8, Seq: 4}}); err == nil || !strings.Contains(err.Error(), "3-8-4 is not in the archive") {
		t.Fatalf("export before 3-8-4 (3-7-4 is archived): %v", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("a refused export wrote %d files", len(ents))
	}
	// A directory with binlog files of an earlier export is refused:
	// mariadb-binlog dir/* would replay them too.
	if _, err := Export(a, out, understudy.StopPoint{UntilGTID: pos(t, "3-7-8")}); err != nil {
		t.Fatal(err)
	}
	if _, err := Export(a, out, understudy.StopPoint{UntilGTID: pos(t, "3-7-2")}); err == nil || !strings.Contains(err.Error(), "already holds binlog files") {
		t.Fatalf("export into a directory with an earlier export: %v", err)
	}
}

func TestWriterLock(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := OpenWriter(dir, WriterOptions{}); err == nil {
		t.Fatal("second writer on the same archive was allowed")
	}
}

// TestTightenOldArchive: an archive written by an older understudy, with
// world-readable files and directories, is made private when opened.
func TestTightenOldArchive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	snap := filepath.Join(dir, "snapshots", "20260101T000000Z")
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snap, "manifest.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "snapshots"), snap} {
		os.Chmod(p, 0o755)
	}
	w, err = OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		info, _ := d.Info()
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v after the archive was opened", path, info.Mode().Perm())
		}
		return nil
	})
}

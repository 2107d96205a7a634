package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// txn is one transaction as a reader returns it: its GTID and a hash of
// its events (without log_pos and CRC, which an export rewrites).
type txn struct {
	GTID understudy.GTID
	Sum  [32]byte
}

func (t txn) String() string { return t.GTID.String() }

// hashEvents hashes the events of one transaction read from r until end.
func hashEvents(r *binlog.Reader, end int64) ([32]byte, error) {
	h := sha256.New()
	for r.Offset() < end {
		ev, err := r.Next()
		if err != nil {
			return [32]byte{}, err
		}
		h.Write(ev[:13])
		h.Write(ev[17 : len(ev)-binlog.ChecksumSize])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

// withSeq returns a copy of a GTID event with sequence number seq.
func withSeq(ev []byte, seq uint64) []byte {
	ev = append([]byte(nil), ev...)
	binary.LittleEndian.PutUint64(ev[binlog.HeaderSize:], seq)
	n := len(ev) - binlog.ChecksumSize
	binary.LittleEndian.PutUint32(ev[n:], crc32.ChecksumIEEE(ev[:n]))
	return ev
}

// incident is an INCIDENT event, which belongs to no transaction.
func incident() []byte {
	return binlog.NewEvent(binlog.Header{Timestamp: 1795363200, Type: binlog.IncidentEvent, ServerID: 7}, []byte{1, 0, 4, 'l', 'o', 's', 't'}, true)
}

// smallArchive writes an archive of 24 transactions (the fixture's eight,
// three times over with new sequence numbers) in several sealed files and
// an active one that holds some of them, with an INCIDENT event between
// two transactions of a sealed file and of the active file. It returns
// the directory.
func smallArchive(t *testing.T) string {
	t.Helper()
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{MaxFileSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, fde)
	for i := range 24 {
		g := append([][]byte(nil), groups[i%len(groups)]...)
		g[0] = withSeq(g[0], uint64(i+1))
		if i == 5 || i == 22 {
			write(t, w, incident())
		}
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
	last := files[len(files)-1]
	if len(files) < 4 || last.Sealed || last.Transactions < 3 || !files[len(files)-2].Sealed {
		t.Fatalf("want several sealed files and an active one with transactions, got %+v", files)
	}
	return dir
}

// readRecords reads every file's records.
func readRecords(dir string) ([]Record, error) {
	a, err := Open(dir)
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, fi := range a.Files() {
		recs, err := a.Records(fi)
		if err != nil {
			return out, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// readCursor walks the archive with a Cursor, as the binlog server does,
// reading every transaction's events.
func readCursor(dir string) ([]txn, error) {
	c, err := OpenCursor(dir, FileName(1))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []txn
	for {
		rec, ok, err := c.Next()
		if err != nil {
			return out, err
		}
		if ok {
			sum, err := hashEvents(c.Events(rec), int64(rec.End))
			if err != nil {
				// As a consumer must: the events of a record that end
				// early (a damaged event size) are corruption too.
				return out, fmt.Errorf("%s at %d: %w", c.Name(), rec.Start, corruptEOF(err))
			}
			out = append(out, txn{rec.GTID, sum})
			continue
		}
		moved, err := c.Advance()
		if err != nil || !moved {
			return out, err
		}
	}
}

// readExport exports the whole archive and reads the exported files.
func readExport(dir string) ([]txn, error) {
	a, err := Open(dir)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "export")
	defer os.RemoveAll(out)
	res, err := Export(a, out, understudy.StopPoint{})
	if err != nil {
		return nil, err
	}
	var txns []txn
	for _, name := range res.Files {
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			return nil, err
		}
		h, err := readHeader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		res := scanRange(f, h.end, 1<<40, h.checksum, 0)
		for _, rec := range res.records {
			r := binlog.NewReaderAt(io.NewSectionReader(f, int64(rec.Start), int64(rec.End-rec.Start)), int64(rec.Start), h.checksum)
			sum, err := hashEvents(r, int64(rec.End))
			if err != nil {
				f.Close()
				return nil, err
			}
			txns = append(txns, txn{rec.GTID, sum})
		}
		f.Close()
		if res.torn != nil {
			return nil, fmt.Errorf("exported %s: %v", name, res.torn)
		}
	}
	if int64(len(txns)) != res.Transactions {
		return nil, fmt.Errorf("export says %d transactions, its files hold %d", res.Transactions, len(txns))
	}
	return txns, nil
}

// verifyProblems runs Verify; a damage that keeps the archive from being
// opened counts as reported when it wraps ErrCorrupt.
func verifyProblems(dir string) ([]Problem, error) {
	a, err := Open(dir)
	if errors.Is(err, understudy.ErrCorrupt) {
		return []Problem{{File: ManifestName, Detail: err.Error()}}, nil
	}
	if err != nil {
		return nil, err
	}
	rep, err := Verify(a)
	return rep.Problems, err
}

// headerOf returns the header of an archived file.
func headerOf(t *testing.T, dir, name string) header {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == LockName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// sameTxns reports whether a reader's result is exactly the archive's, or
// else an error that wraps ErrCorrupt; anything else (fewer transactions,
// other data, another error) is described.
func sameTxns[T comparable](got, want []T, err error) string {
	if err != nil {
		if errors.Is(err, understudy.ErrCorrupt) {
			return ""
		}
		return fmt.Sprintf("error that does not wrap ErrCorrupt: %v", err)
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d transactions and no error, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("transaction %d is %v, want %v", i, got[i], want[i])
		}
	}
	return ""
}

// TestSingleByteFlips flips one byte at a random offset of a sealed or the
// active binlog file, an index or the manifest, each time in a fresh copy
// of a small archive: Verify reports every flip, and every reader returns
// exactly the archive's transactions or an error wrapping ErrCorrupt,
// never fewer without an error.
func TestSingleByteFlips(t *testing.T) {
	pristine := smallArchive(t)
	wantRecs, err := readRecords(pristine)
	if err != nil || len(wantRecs) != 24 {
		t.Fatalf("records of the intact archive: %d, %v", len(wantRecs), err)
	}
	wantTxns, err := readCursor(pristine)
	if err != nil || len(wantTxns) != 24 {
		t.Fatalf("cursor over the intact archive: %d, %v", len(wantTxns), err)
	}
	if got, err := readExport(pristine); sameTxns(got, wantTxns, err) != "" || err != nil {
		t.Fatalf("export of the intact archive: %s %v", sameTxns(got, wantTxns, err), err)
	}
	if p, err := verifyProblems(pristine); len(p) != 0 || err != nil {
		t.Fatalf("verify of the intact archive: %v, %v", p, err)
	}
	a, _ := Open(pristine)
	files := a.Files()
	sealed, active := files[:len(files)-1], files[len(files)-1]
	kinds := []struct {
		name string
		pick func(r *rand.Rand) string
	}{
		{"sealed binlog", func(r *rand.Rand) string { return sealed[r.IntN(len(sealed))].Name }},
		{"active binlog", func(r *rand.Rand) string { return active.Name }},
		{"sealed index", func(r *rand.Rand) string { return sealed[r.IntN(len(sealed))].Name + indexSuffix }},
		{"active index", func(r *rand.Rand) string { return active.Name + indexSuffix }},
		{"manifest", func(r *rand.Rand) string { return ManifestName }},
	}
	// Chosen flips first: the in-use flag of a format description (its
	// CRC check accepts that bit), its checksum algorithm byte (1 -> 0:
	// no CRC checked), an event's size, the active index's last record.
	chosen := []struct {
		name string
		off  int64
		x    byte
	}{
		{sealed[0].Name, 4 + 17, 0x01},
		{active.Name, 4 + 17, 0x01},
		{sealed[1].Name, 4 + int64(len(headerOf(t, pristine, sealed[1].Name).fde)) - binlog.ChecksumSize - 1, 0x01},
		{active.Name, 4 + int64(len(headerOf(t, pristine, active.Name).fde)) - binlog.ChecksumSize - 1, 0x01},
		{sealed[2].Name, int64(wantRecs[sealed[0].Transactions+sealed[1].Transactions].End) + 11, 0x10},
		{active.Name, headerOf(t, pristine, active.Name).end + 11, 0x01},
		{active.Name + indexSuffix, (active.Transactions - 1) * RecordSize, 0x01},
	}
	const seed = 20261126
	rng := rand.New(rand.NewPCG(seed, 10))
	for trial := range len(chosen) + 40 {
		kind := kinds[trial%len(kinds)]
		var name string
		var off int64
		var x byte
		if trial < len(chosen) {
			name, off, x = chosen[trial].name, chosen[trial].off, chosen[trial].x
		} else {
			name = kind.pick(rng)
			st, err := os.Stat(filepath.Join(pristine, name))
			if err != nil {
				t.Fatal(err)
			}
			off, x = rng.Int64N(st.Size()), byte(1+rng.IntN(255))
		}
		what := fmt.Sprintf("trial %d (seed %d): %s: byte %d ^= %#02x", trial, seed, name, off, x)

		dir := copyDir(t, pristine)
		path := filepath.Join(dir, name)
		b, _ := os.ReadFile(path)
		b[off] ^= x
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := verifyProblems(dir)
		if err != nil && !errors.Is(err, understudy.ErrCorrupt) {
			t.Errorf("%s: verify failed: %v", what, err)
		} else if len(p) == 0 && err == nil {
			t.Errorf("%s: verify found no problem", what)
		}
		got, err := readRecords(dir)
		if d := sameTxns(got, wantRecs, err); d != "" {
			t.Errorf("%s: Records: %s", what, d)
		}
		txns, err := readCursor(dir)
		if d := sameTxns(txns, wantTxns, err); d != "" {
			t.Errorf("%s: Cursor: %s", what, d)
		}
		txns, err = readExport(dir)
		if d := sameTxns(txns, wantTxns, err); d != "" {
			t.Errorf("%s: Export: %s", what, d)
		}
		if testing.Verbose() {
			t.Logf("%s: verify: %v", what, p)
		}
	}
}

// TestShortSealedIndex: a sealed file's index that lost records (cut
// short, or cut inside a record, or gone) is rebuilt from the data; Verify
// reports it.
func TestShortSealedIndex(t *testing.T) {
	pristine := smallArchive(t)
	want, err := readRecords(pristine)
	if err != nil {
		t.Fatal(err)
	}
	wantTxns, err := readCursor(pristine)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		keep int64 // bytes of the index kept; -1: removed
	}{{"one record", RecordSize}, {"empty", 0}, {"inside a record", 2*RecordSize + 5}, {"removed", -1}} {
		for _, file := range []string{FileName(1), FileName(2)} { // the second holds an INCIDENT event
			dir := copyDir(t, pristine)
			idx := filepath.Join(dir, file+indexSuffix)
			if tc.keep < 0 {
				os.Remove(idx)
			} else if err := os.Truncate(idx, tc.keep); err != nil {
				t.Fatal(err)
			}
			got, err := readRecords(dir)
			if err != nil {
				t.Fatalf("%s, %s: Records: %v", tc.name, file, err)
			}
			if d := sameTxns(got, want, nil); d != "" {
				t.Fatalf("%s, %s: Records: %s", tc.name, file, d)
			}
			txns, err := readCursor(dir)
			if d := sameTxns(txns, wantTxns, err); d != "" || err != nil {
				t.Fatalf("%s, %s: Cursor: %s %v", tc.name, file, d, err)
			}
			txns, err = readExport(dir)
			if d := sameTxns(txns, wantTxns, err); d != "" || err != nil {
				t.Fatalf("%s, %s: Export: %s %v", tc.name, file, d, err)
			}
			p, err := verifyProblems(dir)
			if err != nil || len(p) == 0 || p[0].File != file || !strings.Contains(p[0].Detail, "damaged index") {
				t.Fatalf("%s, %s: verify: %v, %v", tc.name, file, p, err)
			}
		}
	}
}

// TestIndexHoleIsCorrupt: a sealed file whose index and data both lack a
// transaction the manifest counts is an ErrCorrupt naming the file, and
// so is an active index whose records the data does not hold.
func TestIndexHoleIsCorrupt(t *testing.T) {
	pristine := smallArchive(t)
	a, _ := Open(pristine)
	files := a.Files()

	// A sealed file cut short, with its index: the manifest still counts
	// its transactions.
	dir := copyDir(t, pristine)
	fi := files[0]
	recs, _ := a.Records(fi)
	last := recs[len(recs)-1]
	os.Truncate(filepath.Join(dir, fi.Name), int64(last.Start))
	os.Truncate(filepath.Join(dir, fi.Name+indexSuffix), int64(len(recs)-1)*RecordSize)
	if _, err := readRecords(dir); !errors.Is(err, understudy.ErrCorrupt) || !strings.Contains(err.Error(), fi.Name) {
		t.Fatalf("Records of a sealed file cut short: %v", err)
	}
	if _, err := readCursor(dir); !errors.Is(err, understudy.ErrCorrupt) || !strings.Contains(err.Error(), fi.Name) {
		t.Fatalf("cursor over a sealed file cut short: %v", err)
	}

	// The active file cut inside a transaction its index holds.
	dir = copyDir(t, pristine)
	act := files[len(files)-1]
	recs, _ = a.Records(act)
	os.Truncate(filepath.Join(dir, act.Name), int64(recs[1].End)-3)
	if _, err := readRecords(dir); !errors.Is(err, understudy.ErrCorrupt) || !strings.Contains(err.Error(), act.Name) {
		t.Fatalf("Records of an active file that lacks indexed data: %v", err)
	}
	if p, err := verifyProblems(dir); err != nil || len(p) == 0 {
		t.Fatalf("verify of an active file that lacks indexed data: %v, %v", p, err)
	}
	if _, err := readCursor(dir); !errors.Is(err, understudy.ErrCorrupt) {
		t.Fatalf("cursor over an active file that lacks indexed data: %v", err)
	}
}

// TestManifestChecksum: the manifest carries its own sha256, every flipped
// byte of it is an ErrCorrupt naming the file, a manifest of an older
// version (without the field) is read and given one at the next write, and
// an unknown key is refused.
func TestManifestChecksum(t *testing.T) {
	dir := smallArchive(t)
	path := filepath.Join(dir, ManifestName)
	good, _ := os.ReadFile(path)
	if !bytes.HasPrefix(good, []byte("{\n"+checksumKey)) {
		t.Fatalf("manifest has no checksum line:\n%s", good)
	}
	m, err := readManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for off := range good {
		b := append([]byte(nil), good...)
		b[off] ^= 0x20 // a case change in a key, or worse
		if b[off] == good[off] {
			continue
		}
		os.WriteFile(path, b, 0o600)
		if _, err := readManifest(dir); !errors.Is(err, understudy.ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("byte %d (%q) flipped: %v", off, good[off], err)
		}
	}
	// An older version's manifest: no checksum, accepted, rewritten with
	// one when the writer opens the archive.
	old, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(path, old, 0o600)
	if got, err := readManifest(dir); err != nil || len(got.Files) != len(m.Files) {
		t.Fatalf("manifest without checksum: %v", err)
	}
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if b, _ := os.ReadFile(path); !bytes.Equal(b, good) {
		t.Fatalf("manifest after the writer opened it:\n%s\nwant\n%s", b, good)
	}
	// Strict: a key nothing knows (here "sealed" damaged), or data after the object.
	for _, bad := range [][]byte{
		bytes.Replace(old, []byte(`"sealed"`), []byte(`"sealeD_"`), 1),
		append(append([]byte(nil), old...), []byte("{}")...),
	} {
		os.WriteFile(path, bad, 0o600)
		if _, err := readManifest(dir); !errors.Is(err, understudy.ErrCorrupt) {
			t.Fatalf("manifest %q: %v", bad[len(bad)-40:], err)
		}
	}
}

// TestCursorTailsWriter: a cursor that tails the archive while the writer
// appends, syncs and seals files sees every transaction once, in order,
// and no damage; so do Records meanwhile.
func TestCursorTailsWriter(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{MaxFileSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write(t, w, fde)
	const n = 60
	done := make(chan error, 1)
	go func() {
		for i := range n {
			g := append([][]byte(nil), groups[i%len(groups)]...)
			g[0] = withSeq(g[0], uint64(i+1))
			for _, ev := range g {
				if _, err := w.Write(ev); err != nil {
					done <- err
					return
				}
			}
			if i%3 == 0 {
				if err := w.Sync(); err != nil {
					done <- err
					return
				}
			}
		}
		done <- w.Sync()
	}()
	// Meanwhile, Records of every file is never corrupt or out of order.
	stop := make(chan struct{})
	recErr := make(chan error, 1)
	go func() {
		defer close(recErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			a, err := Open(dir)
			if err != nil {
				recErr <- err
				return
			}
			var seq uint64
			for _, fi := range a.Files() {
				recs, err := a.Records(fi)
				if err != nil {
					recErr <- err
					return
				}
				for _, r := range recs {
					if seq++; r.GTID.Seq != seq {
						recErr <- fmt.Errorf("%s: record %s, want sequence number %d", fi.Name, r.GTID, seq)
						return
					}
				}
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-recErr; err != nil {
			t.Errorf("Records while the writer appends: %v", err)
		}
	}()
	c, err := OpenCursor(dir, FileName(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var seq uint64
	deadline := time.Now().Add(30 * time.Second)
	for seq < n && time.Now().Before(deadline) {
		rec, ok, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if _, err := hashEvents(c.Events(rec), int64(rec.End)); err != nil {
				t.Fatal(err)
			}
			if seq++; rec.GTID.Seq != seq {
				t.Fatalf("transaction %d is %s", seq, rec.GTID)
			}
			continue
		}
		moved, err := c.Advance()
		if err != nil {
			t.Fatal(err)
		}
		if !moved {
			time.Sleep(time.Millisecond)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if seq != n {
		t.Fatalf("the cursor saw %d transactions, want %d", seq, n)
	}
	if err := c.IndexDamage(); err != nil {
		t.Fatalf("damage reported on a sound archive: %v", err)
	}
}

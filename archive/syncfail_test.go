package archive

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-db/understudy/binlog"
)

// TestWriterFailedSyncSticks: Linux reports a writeback error to one
// fdatasync only, so a second one may succeed with the data lost. After a
// failed fsync the Writer syncs nothing again: every later Sync, a
// rotation's seal, Close and Reopen return the first error, nothing more
// is marked durable, and the index gets no record of the transactions
// whose data may be gone.
func TestWriterFailedSyncSticks(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, fde)
	for _, g := range groups[:3] {
		writeGroup(t, w, g)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	durable := w.Durable()
	calls := 0
	w.datasync = func(fd int) error {
		calls++
		if calls == 1 {
			return syscall.EIO
		}
		return syscall.Fdatasync(fd) // the kernel's second answer: success
	}
	writeGroup(t, w, groups[3])
	var se *SyncError
	if err := w.Sync(); !errors.As(err, &se) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync with EIO: %v, want a SyncError", err)
	}
	writeGroup(t, w, groups[4])
	for i, f := range []func() error{w.Sync, w.Sync, w.Reopen, w.Close} {
		if err := f(); !errors.As(err, &se) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("call %d after the failed fsync: %v, want the same SyncError", i, err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d fdatasyncs, want the failed one only", calls)
	}
	if got := w.Durable(); got.Position.String() != durable.Position.String() || got.Offset != durable.Offset {
		t.Fatalf("durable %+v after the failed fsync, want %+v", got, durable)
	}
	b, err := os.ReadFile(filepath.Join(dir, FileName(1)+indexSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b) / RecordSize; n != 3 {
		t.Fatalf("the index has %d records, want the 3 synced before the failure", n)
	}
}

// TestWriterIndexWriteFailure: records that a failed index write left out
// are written with the next ones, so the index never skips a transaction,
// even when the disk has room again before the session ends.
func TestWriterIndexWriteFailure(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, fde)
	writeGroup(t, w, groups[0])
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	good := w.idx
	broken, err := os.Open(good.Name()) // read-only: a write fails, as on a full disk
	if err != nil {
		t.Fatal(err)
	}
	defer broken.Close()
	w.idx = broken
	writeGroup(t, w, groups[1])
	writeGroup(t, w, groups[2])
	if err := w.Sync(); err == nil {
		t.Fatal("sync with an index that cannot be written: no error")
	}
	w.idx = good // room again
	writeGroup(t, w, groups[3])
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(good.Name())
	if err != nil {
		t.Fatal(err)
	}
	recs := parseIndex(b, 1<<30)
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	for i, r := range recs {
		if r.GTID.Seq != uint64(i+1) {
			t.Fatalf("record %d is %s, want seq %d", i, r.GTID, i+1)
		}
	}
}

// TestWriterRecoversIndexHole: an index whose records skip transactions
// (written by a version that dropped records after a failed index write)
// is rebuilt from the data at the hole, not trusted.
func TestWriterRecoversIndexHole(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, fde)
	for _, g := range groups {
		writeGroup(t, w, g)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	crash(w)
	idx := filepath.Join(dir, FileName(1)+indexSuffix)
	b, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	// Records 3 and 4 missing: 1, 2, 5, 6, 7, 8.
	hole := append(append([]byte(nil), b[:2*RecordSize]...), b[4*RecordSize:]...)
	if err := os.WriteFile(idx, hole, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err = OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.Position(), pos(t, "3-7-8"); !got.Equal(want) {
		t.Fatalf("position %s, want %s", got, want)
	}
	if w.records != 8 {
		t.Fatalf("%d transactions counted, want 8", w.records)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(idx)
	recs := parseIndex(b, 1<<30)
	if len(recs) != 8 {
		t.Fatalf("%d records after recovery, want 8", len(recs))
	}
	for i, r := range recs {
		if r.GTID.Seq != uint64(i+1) {
			t.Fatalf("record %d is %s", i, r.GTID)
		}
	}
}

// TestWriterPrimaryCreatedAfterRestart: after understudy restarts, the
// primary's format description with its create timestamp (streaming
// resumes in the primary's first binlog since it started) is not taken
// for a restart of the primary: the archive remembers the timestamp from
// the file that began with it, and starts no new file.
func TestWriterPrimaryCreatedAfterRestart(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{MaxFileSize: 1}) // a file per transaction
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, fde)
	for _, g := range groups[:3] {
		writeGroup(t, w, g)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, err = OpenWriter(dir, WriterOptions{MaxFileSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	before := w.num
	if before < 3 {
		t.Fatalf("%d files, want one per transaction", before)
	}
	write(t, w, fde) // the same primary, not restarted
	if w.num != before {
		t.Fatalf("the primary's format description after a restart of understudy started file %d (after %d): taken for a restart of the primary", w.num, before)
	}
	// A new create timestamp is a restart of the primary: a new file.
	restarted := append([]byte(nil), fde...)
	restarted[71]++ // create_timestamp, at 19 + 2 + 50
	n := len(restarted) - binlog.ChecksumSize
	binary.LittleEndian.PutUint32(restarted[n:], crc32.ChecksumIEEE(restarted[:n]))
	write(t, w, restarted)
	if w.num != before+1 {
		t.Fatalf("a restarted primary's format description: file %d, want %d", w.num, before+1)
	}
}

// TestWriterRotationNotifies: a file started by age, with no transaction
// after it, wakes the readers waiting for more (a binlog server's streams
// then send the ROTATE and name the new file in heartbeats at once).
func TestWriterRotationNotifies(t *testing.T) {
	fde, groups := fixtureGroups(t)
	now := time.Unix(1_800_000_000, 0)
	w, err := OpenWriter(t.TempDir(), WriterOptions{MaxFileAge: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write(t, w, fde)
	writeGroup(t, w, groups[0])
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	ch := w.Notify()
	now = now.Add(2 * time.Minute)
	if rotated, err := w.RotateIfDue(); err != nil || !rotated {
		t.Fatalf("rotation by age: %v %v", rotated, err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("the rotation woke no reader")
	}
	if d := w.Durable(); d.File != FileName(2) {
		t.Fatalf("durable in %s after the rotation, want %s", d.File, FileName(2))
	}
}

package archiver

import (
	"strings"
	"testing"

	"github.com/understudy-db/understudy/archive"
)

// TestChecksumChanges: a primary that writes its binlog without checksums
// (binlog_checksum=NONE, as some older installations do), then with them
// and without again (a DBA's SET GLOBAL, which rotates the binlog), is
// archived whole: every transaction, in files that verify, each file read
// with the checksum setting of its own format description.
func TestChecksumChanges(t *testing.T) {
	p := startPrimary(t, "--binlog-checksum=NONE")
	write(t, p, 5)
	dir := t.TempDir()
	r := start(t, p, dir, nil, nil)
	waitCaughtUp(t, p, dir)
	for _, setting := range []string{"CRC32", "NONE"} {
		p.Exec(t, "SET GLOBAL binlog_checksum = "+setting)
		write(t, p, 5)
		waitCaughtUp(t, p, dir)
	}
	r.stop(t)
	for _, bad := range []string{"level=ERROR", "checksum"} {
		if logs := r.logs.String(); strings.Contains(logs, bad) {
			t.Errorf("the archiver logged %q:\n%s", bad, logs)
		}
	}
	sameGTIDs(t, "checksums off, on, off", archived(t, dir)[1], p.BinlogGTIDs(t))
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := archive.Verify(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("verify: %+v", rep.Problems)
	}
	withCRC := 0
	for _, fi := range a.Files() {
		fr, err := a.OpenFile(fi)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Checksum {
			withCRC++
		}
		fr.Close()
	}
	if withCRC == 0 || withCRC == len(a.Files()) {
		t.Errorf("%d of %d archived files with checksums, want some with and some without", withCRC, len(a.Files()))
	}
}

package archive

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSyncfsReportsErrors(t *testing.T) {
	for release, want := range map[string]bool{
		"6.1.0-18-amd64": true, "5.8.0": true, "5.10.209": true, "5.7.19": false, "4.18.0-513.el8.x86_64": false,
		"6.18.44-fc-v782": true, "5.15-rc1": true, "3": false, "": false, "x.y": false,
	} {
		if got := syncfsReportsErrors(release); got != want {
			t.Errorf("syncfsReportsErrors(%q) = %v, want %v", release, got, want)
		}
	}
}

// TestOpenBatchSync: on this machine's disk (ext4, a recent kernel) a
// directory gets a batch sync, which syncs; on tmpfs, whose syncfs is not
// on the list, it does not.
func TestOpenBatchSync(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatalf("the tests run on Linux, not %s", runtime.GOOS)
	}
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	fs, listed := batchSyncFilesystems[int64(st.Type)]
	b := OpenBatchSync(dir)
	if listed != (b != nil) {
		t.Fatalf("%s is on %s (0x%x, listed %v): batch sync %v", dir, fs, st.Type, listed, b != nil)
	}
	if b != nil {
		defer b.Close()
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Statfs("/dev/shm", &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		if OpenBatchSync("/dev/shm") != nil {
			t.Error("tmpfs got a batch sync")
		}
	}
}

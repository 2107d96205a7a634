package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSyncer: on this machine's disk (ext4, which gets a batch sync) small
// files are left to the one syncfs at the end and big ones are fsynced on
// their own; a file whose close fails makes wait fail, naming it.
func TestSyncer(t *testing.T) {
	dir := t.TempDir()
	sy := newSyncer(dir)
	if sy.batch == nil {
		t.Fatalf("%s got no batch sync (is /tmp not on ext4, xfs or btrfs?)", dir)
	}
	write := func(name string, size int) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		sy.add(f, int64(size))
	}
	for i := range 50 {
		write(fmt.Sprintf("small%d", i), 100)
	}
	write("big", batchMin)
	if err := sy.wait(); err != nil {
		t.Fatal(err)
	}
	if err := sy.wait(); err != nil {
		t.Fatal(err)
	}
	if sy.batched != 50 || sy.synced != 1 {
		t.Fatalf("%d files batch-synced and %d fsynced, want 50 and 1", sy.batched, sy.synced)
	}

	sy = newSyncer(t.TempDir())
	f, err := os.Create(filepath.Join(dir, "closed"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	sy.add(f, 10) // closing it again fails
	if err := sy.wait(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("wait after a failed close: %v", err)
	}
}

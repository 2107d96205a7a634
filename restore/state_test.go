package restore

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestStateFileMode: a restore's state file and its directory are private
// (0600, 0700) under the usual umask 022.
func TestStateFileMode(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "restores", "127.0.0.1_3306.json")
	if err := saveState(path, state{Snapshot: "20260101T000000Z"}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %#o, want %#o", p, got, want)
		}
	}
}

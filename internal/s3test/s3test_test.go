package s3test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBinary: versitygw is found in $(go env GOPATH)/bin when it is not in
// $PATH, and when it is nowhere the error names the install command.
func TestBinary(t *testing.T) {
	found, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	// $PATH with only go: found through go env GOPATH.
	gopath := filepath.Dir(filepath.Dir(found))
	t.Setenv("PATH", filepath.Dir(goBin))
	t.Setenv("GOPATH", gopath)
	// A home of its own: the go command may leave a telemetry writer
	// behind that still writes there after it exits, so its removal is
	// retried rather than left to t.TempDir.
	home, err := os.MkdirTemp("", "s3test-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && os.RemoveAll(home) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Setenv("HOME", home)
	if got, err := Binary(); err != nil || got != found {
		t.Fatalf("Binary with GOPATH=%s: %q, %v; want %s", gopath, got, err, found)
	}
	// Nowhere.
	t.Setenv("GOPATH", t.TempDir())
	_, err = Binary()
	if err == nil || !strings.Contains(err.Error(), "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0") {
		t.Fatalf("Binary without versitygw: %v, want the install command", err)
	}
	if _, serr := os.Stat(found); serr != nil {
		t.Fatal(serr)
	}
}

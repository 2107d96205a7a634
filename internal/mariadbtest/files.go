package mariadbtest

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// FlipByte inverts every bit of the byte at offset off of a file: the
// damage a bad disk or a stray write does, for corruption tests.
func FlipByte(tb testing.TB, path string, off int64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		tb.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], off); err != nil {
		tb.Fatal(err)
	}
}

// LogBuffer collects log output written from several goroutines, for tests
// that check what was logged.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLog is an io.Writer that logs each write with tb.Log, for loggers
// whose output belongs to the test that runs.
type TestLog struct{ TB testing.TB }

func (l TestLog) Write(p []byte) (int, error) {
	l.TB.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Logger returns a text logger at level into the test's log.
func Logger(tb testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(TestLog{tb}, &slog.HandlerOptions{Level: level}))
}

// Eventually polls ok every 50 ms until it holds, and fails the test when
// it does not within timeout.
func Eventually(tb testing.TB, what string, timeout time.Duration, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/s3test"
	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/s3"
	"github.com/understudy-db/understudy/storage/storagetest"
)

func newBackend(t testing.TB, s storage.S3Settings) *s3.Backend {
	t.Helper()
	b, err := s3.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// prefixes gives each test of a suite a prefix of its own.
var prefixes atomic.Int32

func prefix() string { return fmt.Sprintf("t%d/", prefixes.Add(1)) }

// TestConformance runs the shared suite against a real S3 server
// (versitygw), each test under a prefix of its own.
func TestConformance(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return newBackend(t, srv.Settings(prefix()))
	}, storagetest.Options{})
}

// TestConformanceSmallPages: listings of several pages, with the smallest
// page size.
func TestConformanceSmallPages(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	b := newBackend(t, srv.Settings("p/"))
	b.PageSize = 7
	for i := range 50 {
		storagetest.Put(t, b, fmt.Sprintf("x/%03d", i), []byte("x"))
	}
	names, _ := storagetest.List(t, b, "x/")
	if len(names) != 50 || names[0] != "x/000" || names[49] != "x/049" {
		t.Fatalf("list with pages of 7: %d names %q…", len(names), names[:min(3, len(names))])
	}
}

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestEncryptedConformance: the shared suite through encryption and the
// standard decorators (s3.Open's stack), on versitygw.
func TestEncryptedConformance(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	keys := newKeys(t)
	var hdr int64 = -1
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		st := &storage.Settings{S3: srv.Settings(prefix())}
		raw, err := s3.Open(st, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		b := storage.NewEncrypted(raw, keys)
		if hdr < 0 {
			hdr = storagetest.Put(t, b, "probe", nil).Size - 16
			b.Delete(context.Background(), "probe")
		}
		return b
	}, storagetest.Options{StoredSize: func(n int64) int64 { return hdr + n + 16*max(1, (n+65535)/65536) }})
}

func newKeys(t testing.TB) *storage.Keys {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := storage.GenerateKeys(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	k, err := storage.LoadKeys(filepath.Join(dir, storage.RecipientsFileName), filepath.Join(dir, storage.IdentityFileName))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestStockAgeReadsBucket: an object that understudy encrypted into the
// bucket is an age file: stock age decrypts the bytes the S3 server
// stored, which never hold the plaintext.
func TestStockAgeReadsBucket(t *testing.T) {
	ageBin, err := exec.LookPath("age")
	if err != nil {
		t.Fatalf("stock age is not installed (apt-get install -y age; scripts/test.sh does): %v", err)
	}
	srv := s3test.Start(t, s3test.Options{})
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := storage.GenerateKeys(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	keys, err := storage.LoadKeys(filepath.Join(dir, "age.pub"), "")
	if err != nil {
		t.Fatal(err)
	}
	b := storage.NewEncrypted(storage.Stack(newBackend(t, srv.Settings("understudy/")), nil), keys)
	const marker = "marker-4be1-row-data"
	data := bytes.Repeat([]byte("INSERT INTO t VALUES ('"+marker+"');\n"), 20_000)
	storagetest.Put(t, b, "db1/binlog.000001", data)
	stored, err := os.ReadFile(srv.ObjectPath("understudy/db1/binlog.000001"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte(marker)) {
		t.Fatal("the bucket holds the marker in plaintext")
	}
	out, err := exec.Command(ageBin, "-d", "-i", filepath.Join(dir, "age.key"), srv.ObjectPath("understudy/db1/binlog.000001")).Output()
	if err != nil {
		t.Fatalf("age -d: %v", err)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("age -d gave %d bytes, want the %d written", len(out), len(data))
	}
}

// killAt is data that kills the server the first time it is read past
// off, and starts it again after a while: the store fails in the middle
// of an upload.
type killAt struct {
	io.ReaderAt
	off  int64
	once sync.Once
	kill func()
}

func (k *killAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > k.off {
		k.once.Do(k.kill)
	}
	return k.ReaderAt.ReadAt(p, off)
}

// TestRetryRestart: with the standard decorators, every operation goes
// on through a restart of the store: while it is down they wait and
// retry, and succeed once it is back; an upload that the store's death
// cut is made again; a read that it cut resumes where it stopped.
func TestRetryRestart(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	ctx := context.Background()
	for _, encrypted := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", encrypted), func(t *testing.T) {
			var b storage.Backend = storage.Stack(newBackend(t, srv.Settings(prefix())), logger(t))
			if encrypted {
				b = storage.NewEncrypted(b, newKeys(t))
			}
			v1 := storagetest.Put(t, b, "lease", []byte("v1"))
			storagetest.Put(t, b, "old", []byte("old"))

			// Every operation while the store is down.
			srv.Kill(t)
			wait := srv.RestartAfter(t, 1500*time.Millisecond)
			began := time.Now()
			ops := map[string]func() error{
				"put": func() error { _, err := b.Put(ctx, "new", strings.NewReader("new"), 3); return err },
				"put-if-absent": func() error {
					_, err := b.PutIfAbsent(ctx, "manifest.000002", strings.NewReader("m"), 1)
					return err
				},
				"replace-if": func() error {
					_, err := b.ReplaceIf(ctx, "lease", strings.NewReader("v2"), 2, v1.ETag)
					return err
				},
				"stat":   func() error { _, err := b.Stat(ctx, "old"); return err },
				"get":    func() error { _, err := storagetest.ReadErr(b, "old", 0, -1); return err },
				"list":   func() error { return b.List(ctx, "", func(storage.Info) error { return nil }) },
				"delete": func() error { return b.Delete(ctx, "gone") },
			}
			var wg sync.WaitGroup
			for name, op := range ops {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := op(); err != nil {
						t.Errorf("%s while the store restarts: %v", name, err)
					} else if d := time.Since(began); d < time.Second {
						t.Errorf("%s succeeded after %v, while the store was down", name, d)
					}
				}()
			}
			wg.Wait()
			wait()
			if got := storagetest.Read(t, b, "lease", 0, -1); string(got) != "v2" {
				t.Fatalf("lease = %q after replace-if, want v2", got)
			}

			// An upload cut by the store's death.
			data := storagetest.Pattern{Seed: 11, Size: 24 << 20}
			var waitPut func()
			cut := &killAt{ReaderAt: data, off: 5 << 20, kill: func() {
				srv.Kill(t)
				waitPut = srv.RestartAfter(t, time.Second)
			}}
			if _, err := b.PutIfAbsent(ctx, "big", cut, data.Size); err != nil {
				t.Fatalf("put-if-absent cut by a restart: %v", err)
			}
			waitPut()
			sum := data.Sum()

			// A read cut by the store's death resumes.
			rc, err := b.Get(ctx, "big", 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			h := sha256.New()
			if _, err := io.CopyN(h, rc, 1<<20); err != nil {
				t.Fatal(err)
			}
			srv.Kill(t)
			waitGet := srv.RestartAfter(t, time.Second)
			n, err := io.Copy(h, rc)
			waitGet()
			if err != nil {
				t.Fatalf("read cut by a restart: %v after %d bytes", err, n+1<<20)
			}
			if n+1<<20 != data.Size || !bytes.Equal(h.Sum(nil), sum) {
				t.Fatalf("read %d bytes through a restart, want %d with the same sha256", n+1<<20, data.Size)
			}
		})
	}
}

// TestRetryGivesUp: a store that stays down is given up after MaxElapsed,
// with the cause and the number of attempts; a permanent error is not
// retried at all.
func TestRetryGivesUp(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	raw := newBackend(t, srv.Settings("g/"))
	r := storage.NewRetry(raw, nil)
	r.MaxElapsed = time.Second
	storagetest.Put(t, r, "x", []byte("x"))
	began := time.Now()
	if _, err := r.Stat(context.Background(), "nope"); !storage.IsNotExist(err) || time.Since(began) > 500*time.Millisecond {
		t.Fatalf("stat of a missing object: %v after %v, want ErrNotExist at once", err, time.Since(began))
	}
	srv.Kill(t)
	began = time.Now()
	_, err := r.Stat(context.Background(), "x")
	d := time.Since(began)
	if err == nil || !storage.IsRetryable(err) || !strings.Contains(err.Error(), "gave up after") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("stat of a dead store: %v, want the connection error and the attempts", err)
	}
	// It gives up when the next wait would pass MaxElapsed: after more
	// than one attempt, and before MaxElapsed.
	if strings.Contains(err.Error(), "after 1 attempts") || d > 2*time.Second {
		t.Fatalf("gave up after %v, want after several attempts within MaxElapsed (1s)", d)
	}
	t.Logf("%v", err)

	// The caller gives up first: its error (with the store's, when it
	// ended during a wait between attempts), not retryable.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began = time.Now()
	_, err = r.Stat(ctx, "x")
	if !errors.Is(err, context.DeadlineExceeded) || storage.IsRetryable(err) || time.Since(began) > time.Second {
		t.Fatalf("stat stopped by the caller: %v after %v", err, time.Since(began))
	}
}

// TestTimeout: a store that hangs (SIGSTOP: connections are accepted,
// nothing answers) is given up after the timeout with ErrTimeout, which
// Retry retries until the store answers again; a slow caller is not a
// stalled store.
func TestTimeout(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	raw := newBackend(t, srv.Settings("h/"))
	ctx := context.Background()
	data := storagetest.Pattern{Seed: 5, Size: 32 << 20}
	if _, err := raw.Put(ctx, "big", data, data.Size); err != nil {
		t.Fatal(err)
	}
	tb := storage.NewTimeout(raw, 300*time.Millisecond)

	srv.Pause(t)
	began := time.Now()
	_, err := tb.Stat(ctx, "big")
	d := time.Since(began)
	srv.Resume(t)
	if !errors.Is(err, storage.ErrTimeout) || !storage.IsRetryable(err) || d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("stat of a hung store: %v after %v, want ErrTimeout after about 300ms", err, d)
	}

	// Retry waits for the store to answer again.
	r := storage.NewRetry(tb, logger(t))
	r.MaxElapsed = 20 * time.Second
	srv.Pause(t)
	go func() { time.Sleep(time.Second); srv.Resume(t) }()
	began = time.Now()
	if _, err := r.Stat(ctx, "big"); err != nil || time.Since(began) < time.Second {
		t.Fatalf("stat with retries across a 1s hang: %v after %v", err, time.Since(began))
	}

	// A read that hangs in the middle.
	rc, err := tb.Get(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, 1<<20); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	srv.Resume(t)
	if !errors.Is(err, storage.ErrTimeout) {
		t.Fatalf("read from a hung store: %v, want ErrTimeout", err)
	}

	// A caller that waits between reads longer than the timeout.
	rc, err = tb.Get(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, 1<<20); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	if n, err := io.Copy(io.Discard, rc); err != nil || n != data.Size-1<<20 {
		t.Fatalf("read after the caller paused: %d bytes, %v", n, err)
	}
}

// TestUncertain: a conditional write whose reply is lost is retried; the
// retry finds the object written and says that it may be this call's
// (ErrUncertain), unlike a plain conflict.
func TestUncertain(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	p := s3test.StartDropProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	s := srv.Settings("u/")
	s.Endpoint = "http://" + p.Addr()
	b := storage.Stack(newBackend(t, s), logger(t))
	ctx := context.Background()

	p.Drop.Store(true)
	_, err := b.PutIfAbsent(ctx, "lease", strings.NewReader("mine"), 4)
	if !errors.Is(err, storage.ErrExists) || !errors.Is(err, storage.ErrUncertain) {
		t.Fatalf("put-if-absent whose reply was lost: %v, want ErrExists and ErrUncertain", err)
	}
	if got := storagetest.Read(t, b, "lease", 0, -1); string(got) != "mine" {
		t.Fatalf("lease = %q", got)
	}
	_, err = b.PutIfAbsent(ctx, "lease", strings.NewReader("other"), 5)
	if !errors.Is(err, storage.ErrExists) || errors.Is(err, storage.ErrUncertain) {
		t.Fatalf("put-if-absent of an existing object: %v, want ErrExists alone", err)
	}
	st, err := b.Stat(ctx, "lease")
	if err != nil {
		t.Fatal(err)
	}
	p.Drop.Store(true)
	_, err = b.ReplaceIf(ctx, "lease", strings.NewReader("renewed"), 7, st.ETag)
	if !errors.Is(err, storage.ErrPrecondition) || !errors.Is(err, storage.ErrUncertain) {
		t.Fatalf("replace-if whose reply was lost: %v, want ErrPrecondition and ErrUncertain", err)
	}
	if got := storagetest.Read(t, b, "lease", 0, -1); string(got) != "renewed" {
		t.Fatalf("lease = %q", got)
	}
	t.Logf("%v", err)
}

// TestTLS: an https endpoint with a private CA works with ca_file, and
// without it fails at once with a permanent error.
func TestTLS(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{TLS: true})
	b := storage.Stack(newBackend(t, srv.Settings("tls/")), logger(t))
	storagetest.Put(t, b, "x", []byte("over tls"))
	if got := storagetest.Read(t, b, "x", 0, -1); string(got) != "over tls" {
		t.Fatalf("read %q", got)
	}
	s := srv.Settings("tls/")
	s.CAFile = ""
	nb := storage.Stack(newBackend(t, s), logger(t))
	began := time.Now()
	_, err := nb.Stat(context.Background(), "x")
	if err == nil || storage.IsRetryable(err) || time.Since(began) > 2*time.Second || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("https with an unknown CA: %v after %v, want a permanent certificate error at once", err, time.Since(began))
	}
	s.CAFile = srv.CAFile
	s.Endpoint = strings.Replace(srv.Endpoint, "https", "http", 1)
	if _, err := s3.New(s); err == nil {
		t.Fatal("ca_file with an http endpoint accepted")
	}
}

// TestRefusals: a wrong key, a missing bucket and a bad endpoint give one
// line each, at once, without retries.
func TestRefusals(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	ctx := context.Background()
	s := srv.Settings("")
	s.SecretKey = "wrong"
	began := time.Now()
	_, err := storage.Stack(newBackend(t, s), nil).Put(ctx, "x", strings.NewReader("x"), 1)
	if err == nil || storage.IsRetryable(err) || !strings.Contains(err.Error(), "access denied") || strings.Contains(err.Error(), "\n") || time.Since(began) > 2*time.Second {
		t.Fatalf("wrong secret key: %v after %v", err, time.Since(began))
	}
	s = srv.Settings("")
	s.Bucket = "no-such-bucket"
	_, err = storage.Stack(newBackend(t, s), nil).Put(ctx, "x", strings.NewReader("x"), 1)
	if err == nil || storage.IsRetryable(err) || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Fatalf("missing bucket: %v", err)
	}
	for _, c := range []struct{ endpoint, want string }{
		{"http://10.1.2.3:9000", "loopback"},
		{"http://s3.example.net", "loopback"},
		{"ftp://127.0.0.1", "scheme"},
		{"https://s3.example.net/bucket", "only the scheme"},
		{"s3.example.net", "not a URL"},
	} {
		s := srv.Settings("")
		s.Endpoint = c.endpoint
		if _, err := s3.New(s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("endpoint %s: %v, want an error about %q", c.endpoint, err, c.want)
		}
	}
	for _, ok := range []string{"http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000", "https://s3.example.net", ""} {
		s := srv.Settings("")
		s.Endpoint = ok
		if _, err := s3.New(s); err != nil {
			t.Errorf("endpoint %q: %v", ok, err)
		}
	}
	s = srv.Settings("")
	s.Bucket = "Bad_Bucket"
	if _, err := s3.New(s); err == nil {
		t.Error("bucket Bad_Bucket accepted")
	}
}

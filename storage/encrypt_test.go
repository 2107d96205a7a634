package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/local"
	"github.com/understudy-db/understudy/storage/storagetest"
)

// newKeys makes a key pair with GenerateKeys (what `understudy keygen`
// runs) and loads it; it returns the keys and their directory.
func newKeys(t testing.TB) (*storage.Keys, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := storage.GenerateKeys(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	k, err := storage.LoadKeys(filepath.Join(dir, storage.RecipientsFileName), filepath.Join(dir, storage.IdentityFileName))
	if err != nil {
		t.Fatal(err)
	}
	return k, dir
}

func openLocal(t testing.TB) *local.Backend {
	t.Helper()
	b, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// storedSize is the size of the age file of n bytes encrypted to one
// X25519 recipient: the header and nonce (the size of an empty object's
// file less its one 16-byte tag), the plaintext, and a 16-byte tag per
// 64 KiB chunk (at least one).
func storedSize(t testing.TB, b storage.Backend) func(int64) int64 {
	t.Helper()
	info := storagetest.Put(t, b, "size-probe", nil)
	if err := b.Delete(context.Background(), "size-probe"); err != nil {
		t.Fatal(err)
	}
	hdr := info.Size - 16
	return func(n int64) int64 { return hdr + n + 16*max(1, (n+65535)/65536) }
}

// TestEncryptedConformance: the shared suite, through encryption and the
// standard decorators, on a directory.
func TestEncryptedConformance(t *testing.T) {
	keys, _ := newKeys(t)
	var size func(int64) int64
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b := storage.NewEncrypted(storage.Stack(openLocal(t), nil), keys)
		if size == nil {
			size = storedSize(t, b)
		}
		return b
	}, storagetest.Options{StoredSize: func(n int64) int64 { return size(n) }})
}

// TestStackConformance: the shared suite through the standard decorators.
func TestStackConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return storage.Stack(openLocal(t), nil) }, storagetest.Options{Many: 300})
}

// marked returns n bytes of text in which marker appears many times.
func marked(n int, marker string) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "INSERT INTO t VALUES (%d, '%s');\n", i, marker)
	}
	return b.Bytes()[:n]
}

// TestEncryptedStockAge: stock `age -d -i age.key` decrypts objects
// written through the encrypting decorator, with keys from GenerateKeys,
// and the stored bytes never hold the plaintext; the other way round, a
// file that stock age encrypted to age.pub reads through the decorator.
func TestEncryptedStockAge(t *testing.T) {
	ageBin, err := exec.LookPath("age")
	if err != nil {
		t.Fatalf("stock age is not installed (apt-get install -y age; scripts/test.sh does): %v", err)
	}
	keys, dir := newKeys(t)
	raw := openLocal(t)
	b := storage.NewEncrypted(raw, keys)
	const marker = "understudy-marker-7f3a9c"
	for _, n := range []int{0, 1, 100, 65535, 65536, 65537, 3*65536 + 17, 1 << 20} {
		name := fmt.Sprintf("db1/binlog.%06d", n)
		data := marked(n, marker)
		storagetest.Put(t, b, name, data)
		stored, err := os.ReadFile(raw.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		if n > len(marker) && bytes.Contains(stored, []byte(marker)) {
			t.Fatalf("%s: the stored bytes hold the marker in plaintext", name)
		}
		if !bytes.HasPrefix(stored, []byte("age-encryption.org/v1\n-> X25519 ")) {
			t.Fatalf("%s: the stored bytes are not an age file: %q", name, stored[:min(40, len(stored))])
		}
		out, err := exec.Command(ageBin, "-d", "-i", filepath.Join(dir, storage.IdentityFileName), raw.Path(name)).Output()
		if err != nil {
			t.Fatalf("age -d %s: %v", name, errText(err))
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("age -d %s: %d bytes, want the %d written", name, len(out), len(data))
		}
		if got := storagetest.Read(t, b, name, 0, -1); !bytes.Equal(got, data) {
			t.Fatalf("%s: read back %d bytes, want %d", name, len(got), len(data))
		}
	}

	// Stock age encrypts, understudy decrypts (a range too).
	data := marked(300_000, marker)
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(raw.Path("from-age/x")), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ageBin, "-R", filepath.Join(dir, storage.RecipientsFileName), "-o", raw.Path("from-age/x"), plain).CombinedOutput(); err != nil {
		t.Fatalf("age -R: %v: %s", err, out)
	}
	if got := storagetest.Read(t, b, "from-age/x", 0, -1); !bytes.Equal(got, data) {
		t.Fatal("an object encrypted by stock age does not read back")
	}
	if got := storagetest.Read(t, b, "from-age/x", 70_000, 100_000); !bytes.Equal(got, data[70_000:170_000]) {
		t.Fatal("a range of an object encrypted by stock age does not read back")
	}
}

func errText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return err.Error() + ": " + string(ee.Stderr)
	}
	return err.Error()
}

// TestEncryptedKeys: a host with only the recipients writes but cannot
// read; another identity, or none, gives a one-line error that names the
// object and is not retried.
func TestEncryptedKeys(t *testing.T) {
	keys, _ := newKeys(t)
	other, _ := newKeys(t)
	raw := openLocal(t)
	ctx := context.Background()
	writer := storage.NewEncrypted(raw, &storage.Keys{Recipients: keys.Recipients})
	storagetest.Put(t, writer, "db1/x", []byte("secret rows"))
	_, err := writer.Get(ctx, "db1/x", 0, -1)
	if !errors.Is(err, storage.ErrNoKey) || storage.IsRetryable(err) || !strings.Contains(err.Error(), "identity_file") {
		t.Fatalf("read without an identity: %v, want ErrNoKey naming identity_file", err)
	}
	reader := storage.NewEncrypted(raw, &storage.Keys{Identities: keys.Identities})
	if _, err := reader.Put(ctx, "db1/y", strings.NewReader("x"), 1); !errors.Is(err, storage.ErrNoKey) {
		t.Fatalf("write without recipients: %v, want ErrNoKey", err)
	}
	if got := storagetest.Read(t, reader, "db1/x", 0, -1); string(got) != "secret rows" {
		t.Fatalf("read %q", got)
	}
	wrong := storage.NewEncrypted(raw, other)
	for _, r := range [][2]int64{{0, -1}, {2, 3}} {
		_, err := wrong.Get(ctx, "db1/x", r[0], r[1])
		msg := fmt.Sprint(err)
		if !errors.Is(err, storage.ErrWrongKey) || storage.IsRetryable(err) || strings.Contains(msg, "\n") || !strings.Contains(msg, raw.Path("db1/x")) {
			t.Fatalf("read %v with another identity: %q, want a one-line ErrWrongKey naming the file", r, msg)
		}
		t.Logf("wrong key: %s", msg)
	}
}

// TestEncryptedCorrupt: a damaged, truncated or unencrypted object is
// ErrCorrupt (permanent), never wrong data.
func TestEncryptedCorrupt(t *testing.T) {
	keys, _ := newKeys(t)
	raw := openLocal(t)
	b := storage.NewEncrypted(raw, keys)
	data := marked(200_000, "row")
	storagetest.Put(t, b, "ok", data)
	stored, err := os.ReadFile(raw.Path("ok"))
	if err != nil {
		t.Fatal(err)
	}
	hdr := len(stored) - len(data) - 4*16
	damage := func(name string, mod func([]byte) []byte) {
		storagetest.Put(t, raw, name, mod(bytes.Clone(stored)))
	}
	damage("flip-payload", func(b []byte) []byte { b[hdr+100] ^= 1; return b })
	mac := bytes.Index(stored, []byte("\n--- ")) + 10
	damage("flip-header-mac", func(b []byte) []byte { b[mac] ^= 1; return b })
	damage("truncated", func(b []byte) []byte { return b[:len(b)-1000] })
	damage("cut-at-chunk", func(b []byte) []byte { return b[:hdr+65536+16] })
	storagetest.Put(t, raw, "plain", data)
	for _, name := range []string{"flip-payload", "flip-header-mac", "truncated", "cut-at-chunk", "plain"} {
		for _, r := range [][2]int64{{0, -1}, {10, 20}} {
			got, err := storagetest.ReadErr(b, name, r[0], r[1])
			if !errors.Is(err, storage.ErrCorrupt) || storage.IsRetryable(err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%s %v: %d bytes, %v; want a one-line ErrCorrupt", name, r, len(got), err)
			}
		}
	}
	// A range that avoids the damaged chunk still reads: each 64 KiB
	// chunk is authenticated on its own.
	if got := storagetest.Read(t, b, "flip-payload", 70_000, 1000); !bytes.Equal(got, data[70_000:71_000]) {
		t.Fatal("an undamaged range of a damaged object differs")
	}
}

// TestSealerDeterministic: an encrypted Put hands the store an age file
// that reads the same at any offset, any number of times, also from
// several goroutines: retries and parallel multipart uploads depend on
// it. The store here is a directory, wrapped to read the data it is given
// at random places, in 4 goroutines, before storing it.
func TestSealerDeterministic(t *testing.T) {
	keys, _ := newKeys(t)
	raw := openLocal(t)
	type piece struct {
		off  int64
		data []byte
	}
	var mu sync.Mutex
	var pieces []piece
	spy := rereading{Backend: raw, reads: func(r io.ReaderAt, size int64) error {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for range 200 {
					off := rng.Int64N(size)
					n := rng.Int64N(min(200_000, size-off)) + 1
					p := make([]byte, n)
					if m, err := r.ReadAt(p, off); int64(m) != n || (err != nil && err != io.EOF) {
						errs <- fmt.Errorf("read [%d, +%d): %d, %v", off, n, m, err)
						return
					}
					mu.Lock()
					pieces = append(pieces, piece{off, p})
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}}
	b := storage.NewEncrypted(spy, keys)
	data := storagetest.Pattern{Seed: 3, Size: 1<<20 + 12345}
	if _, err := b.Put(context.Background(), "x", data, data.Size); err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(raw.Path("x"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pieces) != 800 {
		t.Fatalf("%d pieces read", len(pieces))
	}
	for _, p := range pieces {
		if !bytes.Equal(p.data, stored[p.off:p.off+int64(len(p.data))]) {
			t.Fatalf("read [%d, +%d) differs from the same range stored", p.off, len(p.data))
		}
	}
	pr, err := age.Decrypt(bytes.NewReader(stored), keys.Identities...)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, data.Bytes(0, data.Size)) {
		t.Fatal("age.Decrypt of the stored file differs from the data")
	}
}

// rereading is a store that reads the data of a Put (with reads) before
// storing it.
type rereading struct {
	storage.Backend
	reads func(r io.ReaderAt, size int64) error
}

func (x rereading) Put(ctx context.Context, name string, r io.ReaderAt, size int64) (storage.Info, error) {
	if err := x.reads(r, size); err != nil {
		return storage.Info{}, err
	}
	return x.Backend.Put(ctx, name, r, size)
}

// TestGenerateKeys: the files and their modes, age's formats, and no
// overwriting.
func TestGenerateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k")
	rcpt, err := storage.GenerateKeys(dir, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"": 0o700, storage.IdentityFileName: 0o600, storage.RecipientsFileName: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Fatalf("%s: mode %v, want %v", filepath.Join(dir, name), fi.Mode().Perm(), mode)
		}
	}
	key, _ := os.ReadFile(filepath.Join(dir, storage.IdentityFileName))
	pub, _ := os.ReadFile(filepath.Join(dir, storage.RecipientsFileName))
	if want := "# created: 2026-11-26T10:00:00Z\n# public key: " + rcpt + "\nAGE-SECRET-KEY-1"; !strings.HasPrefix(string(key), want) {
		t.Fatalf("age.key = %q, want it to begin %q", key, want)
	}
	if string(pub) != rcpt+"\n" || !strings.HasPrefix(rcpt, "age1") {
		t.Fatalf("age.pub = %q, recipient %q", pub, rcpt)
	}
	if _, err := age.ParseX25519Recipient(rcpt); err != nil {
		t.Fatal(err)
	}
	_, err = storage.GenerateKeys(dir, time.Now())
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second GenerateKeys: %v, want a refusal", err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, storage.IdentityFileName)); !bytes.Equal(again, key) {
		t.Fatal("the refused GenerateKeys changed age.key")
	}
	// Only age.pub there: refused too, and no age.key is made.
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, storage.RecipientsFileName), pub, 0o644)
	if _, err := storage.GenerateKeys(dir2, time.Now()); err == nil {
		t.Fatal("GenerateKeys overwrote an age.pub")
	}
	if _, err := os.Stat(filepath.Join(dir2, storage.IdentityFileName)); err == nil {
		t.Fatal("the refused GenerateKeys left an age.key")
	}
	if _, err := storage.LoadKeys("", ""); err == nil {
		t.Fatal("LoadKeys without files succeeded")
	}
	if _, err := storage.LoadKeys(filepath.Join(dir, storage.IdentityFileName), ""); err == nil {
		t.Fatal("LoadKeys took an identity for recipients")
	}
}

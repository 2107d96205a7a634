package remote

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/local"
)

// TestPutDataExisting: a write-once data object that an earlier attempt
// stored is kept when its content is the one to store (plain, or
// encrypted with other random bytes), and recorded as it is stored; one
// with other content is an error, never recorded as shipped.
func TestPutDataExisting(t *testing.T) {
	ctx := context.Background()
	b, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := storage.GenerateKeys(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	keys, err := storage.LoadKeys(filepath.Join(dir, storage.RecipientsFileName), filepath.Join(dir, storage.IdentityFileName))
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("segment bytes "), 5000)
	// Above MaxConditional (1 KiB here, 5 GiB in production) an object is
	// written with Put, in parts on S3: the same rules hold.
	for name, st := range map[string]Store{
		"plain": {Plain: b}, "encrypted": {Plain: b, Enc: storage.NewEncrypted(b, keys)},
		"plain-big": {Plain: b, MaxConditional: 1024}, "encrypted-big": {Plain: b, Enc: storage.NewEncrypted(b, keys), MaxConditional: 1024},
	} {
		n1, sum1, err := st.putData(ctx, name, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		// Again, as a retry after an uncertain first attempt would.
		n2, sum2, err := st.putData(ctx, name, bytes.NewReader(data), int64(len(data)))
		if err != nil || n2 != n1 || sum2 != sum1 {
			t.Fatalf("%s: again: %d %s %v; the object is %d bytes, %s", name, n2, sum2, err, n1, sum1)
		}
		other := append([]byte(nil), data...)
		other[100] ^= 1
		if _, _, err := st.putData(ctx, name, bytes.NewReader(other), int64(len(other))); !errors.Is(err, understudy.ErrCorrupt) || !strings.Contains(err.Error(), "exists with other content") {
			t.Fatalf("%s: other content under the name: %v", name, err)
		}
	}
}

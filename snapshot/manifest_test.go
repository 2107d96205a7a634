package snapshot

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
)

func testManifest(t *testing.T) *Manifest {
	t.Helper()
	pos, err := understudy.ParsePosition("1-1-100,2-2-7")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 15, 14, 0, 0, time.UTC)
	return &Manifest{
		Version: 1, ID: "20261122T151400Z", Source: "db1", Position: pos, From: "db1:3306",
		Started: at, PositionTime: at.Add(time.Second), Finished: at.Add(time.Minute), CommitBlockMillis: 1.25,
		Threads: 4, Compression: "zstd", Checksum: "bitxor64-crc32-crc32c-concat_ws-binary-v2",
		Databases: []Database{{Name: "shop", Schema: "shop/schema.sql", Tables: []Table{{
			Name: "orders", Engine: "InnoDB", Schema: "shop/orders.schema.sql", Columns: []string{"id", "item"}, Types: []string{"int", "varchar"},
			PrimaryKey: []string{"id"}, Chunks: []Chunk{{File: "shop/orders.00000.tsv.zst", Rows: 3, Checksum: "123", Bytes: 30, Compressed: 20}},
		}}}},
		Files: map[string]string{"shop/orders.00000.tsv.zst": strings.Repeat("ab", 32)},
	}
}

// TestManifestChecksum: a snapshot's manifest is written with its own
// sha256 and read strictly; any flipped byte is an ErrCorrupt that names
// the file; a manifest of an older version, without the field, is read.
func TestManifestChecksum(t *testing.T) {
	dir := t.TempDir()
	m := testManifest(t)
	if err := writeManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ManifestName)
	good, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(good), "{\n  \"manifest_sha256\": \"") {
		t.Fatalf("no checksum line:\n%s", good)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != m.ID || !got.Position.Equal(m.Position) || got.Rows() != 3 || got.ManifestSHA256 != "" {
		t.Fatalf("read back %+v", got)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for trial := range 200 {
		off := trial // every byte of the start, then random ones
		if off >= len(good) || trial >= 100 {
			off = rng.IntN(len(good))
		}
		b := append([]byte(nil), good...)
		b[off] ^= byte(1 + rng.IntN(255))
		os.WriteFile(path, b, 0o600)
		if _, err := Read(dir); !errors.Is(err, understudy.ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("byte %d (%q) flipped: %v", off, good[off], err)
		}
	}
	// A case change in a key is read by encoding/json as the same key:
	// the checksum still sees it.
	b := []byte(strings.Replace(string(good), `"rows"`, `"Rows"`, 1))
	os.WriteFile(path, b, 0o600)
	if _, err := Read(dir); !errors.Is(err, understudy.ErrCorrupt) {
		t.Fatalf("key case changed: %v", err)
	}
	// An older version's manifest has no checksum: read as it is, but
	// strictly.
	old, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(path, old, 0o600)
	if got, err := Read(dir); err != nil || got.ID != m.ID {
		t.Fatalf("manifest without checksum: %v", err)
	}
	os.WriteFile(path, []byte(strings.Replace(string(old), `"from_replica"`, `"from_replicA_"`, 1)), 0o600)
	if _, err := Read(dir); !errors.Is(err, understudy.ErrCorrupt) {
		t.Fatalf("unknown key: %v", err)
	}
}

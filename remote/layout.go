// Package remote keeps a source's archive and snapshots in a store
// (storage.Backend): the Shipper uploads them from the local archive
// directory as `understudy run` writes it, a View reads them back into a
// local directory that the archive and snapshot readers read as they read
// any archive, and Verify re-reads every object. docs/storage.md
// ("Shipping") describes the names, the records and the rules.
//
// Glossary:
//
//   - Segment: an immutable object holding bytes [From, To) of one archived
//     binlog file (zstd-compressed, then encrypted when the store is),
//     followed by the index records of the transactions in them. A file in
//     the store is the list of its segments; every segment ends at a
//     transaction boundary.
//   - Manifest: the numbered record (manifest.NNNNNNNNNN.json) of the sealed
//     files, their segments, the generations and what retention removed.
//     Written when a file is sealed or pruned, never rewritten.
//   - Tip: the numbered record (tip.MMMMMMMMMM.NNNNNNNNNN.json) of the active
//     file's segments, on top of manifest M; written every upload interval
//     in which the active file grew.
//   - Commit point: a manifest, a tip, or a snapshot's objects.json. An
//     object is part of the store's archive only once a commit point names
//     it; anything else is garbage of an upload that did not finish.
package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/storage"
)

// Version is the format of the records written.
const Version = 1

// Segment is one object of an archived file in the store.
type Segment struct {
	Name string `json:"name"`
	// From and To are the bytes of the binlog file it holds.
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Records is the number of index records after the data.
	Records int `json:"records"`
	// StoredSize and StoredSHA256 describe the object as it lies in the
	// store (encrypted, when the store is); PlainSHA256 its content once
	// decrypted and decompressed (the data, then the records).
	StoredSize   int64  `json:"stored_size"`
	StoredSHA256 string `json:"stored_sha256"`
	PlainSHA256  string `json:"plain_sha256"`
}

// File is a sealed file of the archive in the store.
type File struct {
	archive.FileInfo
	Segments []Segment `json:"segments"`
}

// Manifest is a commit point of the sealed files.
type Manifest struct {
	// ManifestSHA256 protects the record (archive.MarshalChecked).
	ManifestSHA256 string               `json:"manifest_sha256,omitempty"`
	Version        int                  `json:"version"`
	Source         string               `json:"source"`
	Seq            int64                `json:"seq"`
	Writer         string               `json:"writer"` // the lease generation of the writer
	Written        time.Time            `json:"written"`
	Files          []File               `json:"files"`
	Generations    []archive.Generation `json:"generations,omitempty"`
	PrunedThrough  int                  `json:"pruned_through,omitempty"`
}

// Tip is a commit point of the active file's segments on top of a
// manifest.
type Tip struct {
	ManifestSHA256 string    `json:"manifest_sha256,omitempty"`
	Version        int       `json:"version"`
	Source         string    `json:"source"`
	Base           int64     `json:"base"` // the manifest's Seq
	Seq            int64     `json:"seq"`
	Writer         string    `json:"writer"`
	Written        time.Time `json:"written"`
	File           string    `json:"file"`
	Segments       []Segment `json:"segments"`
	// Size is the durable size shipped (the last segment's To), and
	// Position the archive position after its last transaction.
	Size     int64               `json:"size"`
	Position understudy.Position `json:"position"`
	// LastTime is the commit time of its last transaction (unix seconds).
	LastTime uint32 `json:"last_time"`
}

// Object names, relative to the store (its prefix is the backend's).
func manifestName(source string, seq int64) string {
	return fmt.Sprintf("%s/manifest.%010d.json", source, seq)
}

func tipName(source string, base, seq int64) string {
	return fmt.Sprintf("%s/tip.%010d.%010d.json", source, base, seq)
}

func segmentName(source, file string, from, to int64, writer string) string {
	return fmt.Sprintf("%s/%s.%010d-%010d.%s.zst", source, file, from, to, writer)
}

// SnapshotPrefix is the prefix of a source's snapshot objects.
func SnapshotPrefix(source string) string { return source + "/snapshots/" }

var (
	manifestRe = regexp.MustCompile(`/manifest\.(\d{10})\.json$`)
	tipRe      = regexp.MustCompile(`/tip\.(\d{10})\.(\d{10})\.json$`)
)

// latest lists prefix and returns the names whose number (the submatch
// ns of re) is the highest, in order: the newest last.
func listNumbered(ctx context.Context, b storage.Backend, prefix string, re *regexp.Regexp) ([]string, []int64, error) {
	var names []string
	var seqs []int64
	err := b.List(ctx, prefix, func(i storage.Info) error {
		m := re.FindStringSubmatch(i.Name)
		if m == nil {
			return nil
		}
		n, _ := strconv.ParseInt(m[len(m)-1], 10, 64)
		names, seqs = append(names, i.Name), append(seqs, n)
		return nil
	})
	return names, seqs, err
}

// getRecord reads a commit point and decodes it strictly, checking its
// checksum; a record without one is corrupt.
func getRecord(ctx context.Context, b storage.Backend, name string, v any) error {
	rc, err := b.Get(ctx, name, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 256<<20))
	if err != nil {
		return err
	}
	checked, err := archive.DecodeChecked(where(b, name), data, v)
	if err != nil {
		return err
	}
	if !checked {
		return fmt.Errorf("%s: %w: no manifest_sha256", where(b, name), understudy.ErrCorrupt)
	}
	return nil
}

// putRecord writes a commit point with PutIfAbsent: of two writers, one
// commits. An uncertain conflict whose object holds exactly these bytes
// was this writer's own.
func putRecord(ctx context.Context, b storage.Backend, name string, v any) error {
	data, err := archive.MarshalChecked(v)
	if err != nil {
		return err
	}
	_, err = b.PutIfAbsent(ctx, name, bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, storage.ErrUncertain) && errors.Is(err, storage.ErrExists) {
		if got, rerr := readAll(ctx, b, name); rerr == nil && bytes.Equal(got, data) {
			return nil
		}
	}
	return err
}

func readAll(ctx context.Context, b storage.Backend, name string) ([]byte, error) {
	rc, err := b.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func where(b storage.Backend, name string) string {
	if l, ok := b.(storage.Locator); ok {
		return l.Where(name)
	}
	return name
}

// Store is a source's view of a store: the plain backend (the records, the
// lease) and, when the store is encrypted, the encryption of the data
// objects.
type Store struct {
	// Plain stores the records as they are.
	Plain storage.Backend
	// Enc, when set, encrypts the data objects (segments, snapshot files).
	Enc *storage.Encrypted
	// MaxConditional overrides MaxConditionalPut (tests).
	MaxConditional int64
}

// MaxConditionalPut is the largest data object written with PutIfAbsent:
// S3 makes a conditional write one single PUT, of 5 GiB at most. Bigger
// ones (a snapshot's chunk of a table without a key) are written with Put,
// in parts.
const MaxConditionalPut = 5 << 30

func (s Store) maxConditional() int64 {
	if s.MaxConditional > 0 {
		return s.MaxConditional
	}
	return MaxConditionalPut
}

// data is the backend that data objects are read through.
func (s Store) data() storage.Backend {
	if s.Enc != nil {
		return s.Enc
	}
	return s.Plain
}

// seal returns the bytes that are stored for plain: an age file when the
// store is encrypted, plain itself otherwise.
func (s Store) seal(r io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	if s.Enc == nil {
		return r, size, nil
	}
	return s.Enc.Seal(r, size)
}

// hashAt returns the sha256 of the first size bytes of r.
func hashAt(r io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// putData stores plain (already compressed) as the write-once object name
// and returns its stored size and sha256.
func (s Store) putData(ctx context.Context, name string, plain io.ReaderAt, size int64) (int64, string, error) {
	sealed, n, err := s.seal(plain, size)
	if err != nil {
		return 0, "", err
	}
	sum, err := hashAt(sealed, n)
	if err != nil {
		return 0, "", fmt.Errorf("read %s to upload it: %w", name, err)
	}
	if n > s.maxConditional() {
		// Too big for a conditional write, which S3 does as a single PUT
		// (5 GiB at most): the name is this writer's own (only the lease
		// holder ships), so an unconditional, multipart Put stores it,
		// unless an earlier attempt did.
		if _, serr := s.Plain.Stat(ctx, name); serr == nil {
			err = storage.ErrExists
		} else if errors.Is(serr, storage.ErrNotExist) {
			_, err = s.Plain.Put(ctx, name, sealed, n)
		} else {
			err = serr
		}
	} else {
		_, err = s.Plain.PutIfAbsent(ctx, name, sealed, n)
	}
	if errors.Is(err, storage.ErrExists) {
		// An earlier attempt of this writer (the name holds its
		// generation) stored it: with other random bytes if encrypted, but
		// the same content, which is checked (an interrupted attempt may
		// have left something else). Then what is there is recorded.
		// Both are read as streams: the object may be gigabytes.
		want, err := hashAt(plain, size)
		if err != nil {
			return 0, "", fmt.Errorf("read %s to upload it: %w", name, err)
		}
		content := storage.Backend(s.Plain)
		if s.Enc != nil {
			content = s.Enc
		}
		if _, got, err := hashObject(ctx, content, name); err != nil {
			return 0, "", err
		} else if got != want {
			return 0, "", corrupt(s.Plain, name, "it exists with other content (sha256 %s) than the %d bytes to store (sha256 %s)", got, size, want)
		}
		return hashObject(ctx, s.Plain, name)
	}
	return n, sum, err
}

// hashObject returns the size and sha256 of an object, read as a stream.
func hashObject(ctx context.Context, b storage.Backend, name string) (int64, string, error) {
	rc, err := b.Get(ctx, name, 0, -1)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", where(b, name), err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// zstd coders: one encoder per shipper (for uploads at once), decoders per
// read.
func newEncoder() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(uploads),
		zstd.WithWindowSize(1<<20), zstd.WithEncoderCRC(true))
}

func newDecoder(r io.Reader) (*zstd.Decoder, error) {
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20), zstd.WithDecoderLowmem(true))
}

// corrupt makes an error wrapping understudy.ErrCorrupt that names an
// object.
func corrupt(b storage.Backend, name, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", where(b, name), understudy.ErrCorrupt, fmt.Sprintf(format, args...))
}

// trimSource strips "source/" from a name, for logs.
func trimSource(source, name string) string { return strings.TrimPrefix(name, source+"/") }

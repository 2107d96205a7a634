package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/storage"
)

// View is a source's archive in the store, as of its newest commit points.
type View struct {
	Source string
	Store  Store
	Man    Manifest
	Tip    Tip
}

// OpenView reads the newest manifest and tip of source. A store that holds
// nothing of the source gives an empty view (Empty).
func OpenView(ctx context.Context, st Store, source string) (*View, error) {
	m, tip, err := readHead(ctx, st.Plain, source)
	if err != nil {
		return nil, err
	}
	return &View{Source: source, Store: st, Man: m, Tip: tip}, nil
}

// Empty tells whether the store holds no archived file of the source.
func (v *View) Empty() bool { return len(v.Man.Files) == 0 && v.Tip.Seq == 0 }

// Position is the archive position the store holds.
func (v *View) Position() understudy.Position {
	if v.Tip.Seq > 0 {
		return v.Tip.Position
	}
	if n := len(v.Man.Files); n > 0 {
		return v.Man.Files[n-1].EndPosition
	}
	return understudy.Position{}
}

// fetchLock is the file a View holds (flock) while it writes a directory.
const fetchLock = "FETCH.LOCK"

func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, fetchLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Materialize makes dir an archive directory that holds what the store
// holds: its manifest, the sealed files that want selects (nil: all; the
// others are listed but absent until Fetch) and the active file. The
// archive readers (archive.Open, the binlog server, restore) then read dir
// as any archive. Files already there and whole are kept; every file
// fetched is checked (each segment's sha256, then the file's) before it
// takes its name.
func (v *View) Materialize(ctx context.Context, dir string, want func(archive.FileInfo) bool) error {
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	var names []string
	for _, f := range v.Man.Files {
		if want == nil || want(f.FileInfo) {
			names = append(names, f.Name)
		}
	}
	if err := v.fetch(ctx, dir, names); err != nil {
		return err
	}
	// The sealed files not fetched are held only in the store, as if
	// evicted (Fetch brings them).
	lm := archive.Manifest{Version: 1, Generations: v.Man.Generations, PrunedThrough: v.Man.PrunedThrough}
	for _, f := range v.Man.Files {
		lm.Files = append(lm.Files, f.FileInfo)
		lm.EvictedThrough, _ = archive.FileNumber(f.Name)
	}
	if err := archive.WriteManifest(dir, lm); err != nil {
		return err
	}
	// Files beyond the store's last sealed one: the tip's, and none else
	// (a cached active file the store has sealed or replaced is stale).
	last := v.Man.PrunedThrough
	if n := len(v.Man.Files); n > 0 {
		last, _ = archive.FileNumber(v.Man.Files[n-1].Name)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if n, ok := archive.FileNumber(e.Name()); ok && n > last && (v.Tip.Seq == 0 || e.Name() != v.Tip.File) {
			os.Remove(filepath.Join(dir, e.Name()))
			os.Remove(filepath.Join(dir, archive.IndexName(e.Name())))
		}
	}
	if v.Tip.Seq > 0 {
		if err := v.writeFile(ctx, dir, v.Tip.File, v.Tip.Segments, "", -1); err != nil {
			return err
		}
	}
	return archive.SyncDir(dir)
}

// Fetch writes the sealed files names into dir, unless they are there
// whole already.
func (v *View) Fetch(ctx context.Context, dir string, names []string) error {
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return v.fetch(ctx, dir, names)
}

func (v *View) fetch(ctx context.Context, dir string, names []string) error {
	byName := map[string]File{}
	for _, f := range v.Man.Files {
		byName[f.Name] = f
	}
	var todo []File
	for _, name := range names {
		f, ok := byName[name]
		if !ok {
			return fmt.Errorf("%s is not a sealed file of %s in the store", name, v.Source)
		}
		// A copy fetched before is kept only if its bytes are the
		// manifest's: a damaged or partly written one is fetched again.
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Size() == f.Size {
			if is, err := os.Stat(filepath.Join(dir, archive.IndexName(name))); err == nil && is.Size() == f.Transactions*archive.RecordSize {
				if sum, err := archive.FileSHA256(filepath.Join(dir, name)); err == nil && sum == f.SHA256 {
					continue
				}
			}
		}
		todo = append(todo, f)
	}
	// Files at once: each is a round trip per segment, a decryption and a
	// decompression (a core each). Memory: about 2 x 8 MiB each.
	return parallel(ctx, fetches, len(todo), func(ctx context.Context, _, i int) error {
		f := todo[i]
		return v.writeFile(ctx, dir, f.Name, f.Segments, f.SHA256, f.Transactions)
	})
}

// fetches is how many files a View fetches at once.
const fetches = 4

// writeFile writes the file name and its index from its segments: into
// temporary files, checked, then renamed. wantSHA (when set) and wantRecs
// (when ≥ 0) are what the manifest says of the whole file.
func (v *View) writeFile(ctx context.Context, dir, name string, segs []Segment, wantSHA string, wantRecs int64) error {
	path := filepath.Join(dir, name)
	ipath := filepath.Join(dir, archive.IndexName(name))
	// An active file already fetched up to a segment boundary needs only
	// the segments after it.
	skip := 0
	var data, idx *os.File
	var err error
	if wantSHA == "" {
		if st, err1 := os.Stat(path); err1 == nil {
			recs := 0
			for i, g := range segs {
				if g.To == st.Size() {
					if is, err2 := os.Stat(ipath); err2 == nil && is.Size() == int64(recs+g.Records)*archive.RecordSize {
						skip = i + 1
					}
					break
				}
				recs += g.Records
			}
		}
		if skip == len(segs) {
			return nil
		}
	}
	if skip > 0 {
		if data, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return err
		}
		if idx, err = os.OpenFile(ipath, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			data.Close()
			return err
		}
	} else {
		if data, err = os.OpenFile(path+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600); err != nil {
			return err
		}
		if idx, err = os.OpenFile(ipath+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600); err != nil {
			data.Close()
			return err
		}
	}
	ok := false
	defer func() {
		data.Close()
		idx.Close()
		if !ok && skip == 0 {
			os.Remove(path + ".tmp")
			os.Remove(ipath + ".tmp")
		}
	}()
	whole := sha256.New()
	var recs int64
	at := int64(0)
	if skip > 0 {
		at = segs[skip-1].To
	}
	for _, g := range segs[skip:] {
		if g.From != at {
			return corrupt(v.Store.Plain, g.Name, "segment begins at %d, the previous one ends at %d", g.From, at)
		}
		plain, err := v.readSegment(ctx, g)
		if err != nil {
			return err
		}
		d, r := plain[:g.To-g.From], plain[g.To-g.From:]
		if _, err := archive.ParseRecords(r); err != nil {
			return corrupt(v.Store.Plain, g.Name, "%v", err)
		}
		whole.Write(d)
		if _, err := data.Write(d); err != nil {
			return err
		}
		if _, err := idx.Write(r); err != nil {
			return err
		}
		recs += int64(g.Records)
		at = g.To
	}
	if wantSHA != "" {
		if got := hex.EncodeToString(whole.Sum(nil)); got != wantSHA {
			return fmt.Errorf("%w: %s rebuilt from the store has sha256 %s; its manifest says %s", understudy.ErrCorrupt, name, got, wantSHA)
		}
		if recs != wantRecs {
			return fmt.Errorf("%w: %s rebuilt from the store has %d transactions; its manifest says %d", understudy.ErrCorrupt, name, recs, wantRecs)
		}
	}
	if err := data.Sync(); err != nil {
		return err
	}
	if err := idx.Sync(); err != nil {
		return err
	}
	if skip == 0 {
		if err := os.Rename(path+".tmp", path); err != nil {
			return err
		}
		if err := os.Rename(ipath+".tmp", ipath); err != nil {
			return err
		}
	}
	ok = true
	return nil
}

// readSegment reads a segment whole, decrypted and decompressed, and
// checks it against its record.
func (v *View) readSegment(ctx context.Context, g Segment) ([]byte, error) {
	b := v.Store.data()
	rc, err := b.Get(ctx, g.Name, 0, -1)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s, which a commit point names, is missing", understudy.ErrCorrupt, where(v.Store.Plain, g.Name))
		}
		return nil, err
	}
	defer rc.Close()
	dec, err := newDecoder(rc)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	limit := g.To - g.From + int64(g.Records)*archive.RecordSize
	plain, err := io.ReadAll(io.LimitReader(dec, limit+1))
	if err != nil {
		if errors.Is(err, understudy.ErrCorrupt) || errors.Is(err, storage.ErrWrongKey) || errors.Is(err, storage.ErrNoKey) || storage.IsRetryable(err) {
			return nil, err
		}
		return nil, corrupt(v.Store.Plain, g.Name, "%v", err)
	}
	if int64(len(plain)) != limit {
		return nil, corrupt(v.Store.Plain, g.Name, "holds %d bytes; its record says %d", len(plain), limit)
	}
	if sum := sha256.Sum256(plain); hex.EncodeToString(sum[:]) != g.PlainSHA256 {
		return nil, corrupt(v.Store.Plain, g.Name, "sha256 of its content is %s; its record says %s", hex.EncodeToString(sum[:]), g.PlainSHA256)
	}
	return plain, nil
}

package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/storage"
)

// DefaultSegmentMax is the most bytes of a binlog file that one segment
// holds: what a shipper buffers, compressed, at most.
const DefaultSegmentMax = 8 << 20

// maxSegments is how many segments a file may have before the shipper
// merges its newest small ones into one.
const maxSegments = 32

// Shipper uploads a source's archive as `understudy run` writes it: each
// sealed file with a new manifest, the active file's new durable bytes
// every Interval with a new tip. It reads the local archive directory only
// (as the binlog server does), so archiving never waits for the store.
type Shipper struct {
	Source string
	Dir    string // the source's local archive directory
	// SnapshotRoot is the source's local snapshots directory; empty: no
	// snapshots are shipped.
	SnapshotRoot string
	Store        Store
	// Interval is how often the active file's new bytes are shipped.
	Interval time.Duration
	// Writer names this writer in object names and records: the lease's
	// generation.
	Writer string
	// Check, when set, is called right before each commit point is
	// written, and nothing is committed when it fails (lease.Check).
	Check func(ctx context.Context) error
	Log   *slog.Logger
	// SegmentMax overrides DefaultSegmentMax (tests).
	SegmentMax int64
	// LocalKeep is how many bytes of sealed files that the store holds
	// the local directory keeps (storage.local_keep); Evict removes the
	// local copies of older ones (archive.Writer.Evict). Nothing is evicted
	// when Evict is nil.
	LocalKeep int64
	Evict     func(keepFrom string) ([]archive.FileInfo, error)
	// Grace is how long a segment that no commit point names any more
	// (a merge replaced it, retention removed its file) stays in the store
	// before it is deleted: a reader that opened an older head, such as a
	// restore from the store while this writer ships, may still read it.
	// 0: DefaultGrace; negative: deleted at once (tests).
	Grace time.Duration

	mu     sync.Mutex
	status Status

	man    Manifest // the newest committed manifest (Seq 0: none)
	tip    Tip      // the newest committed tip on man (Seq 0: none)
	loaded bool
	enc    *zstd.Encoder
	held   *os.File
	heldN  int

	seenLocal map[string]bool      // snapshots seen in SnapshotRoot
	keptGone  map[string]bool      // snapshots gone locally without retention, kept in the store (warned once)
	marks     []mark               // the local durable end as seen, oldest first, not shipped yet
	dirty     bool                 // a manifest was committed: collect the garbage
	retired   map[string]time.Time // segments no commit point names, since when (see Grace)
	// tipChecked: the tip's segments were checked against the local
	// file (once per process).
	tipChecked bool
}

// mark is the local archive's durable end (file number, size) as seen at
// a time.
type mark struct {
	at   time.Time
	file int
	size int64
}

func (m mark) after(file int, size int64) bool {
	return m.file > file || m.file == file && m.size > size
}

// Status is what a Shipper reports.
type Status struct {
	// Position is the archive position the store holds.
	Position understudy.Position `json:"position"`
	// LastUpload is when a commit point was last written.
	LastUpload time.Time `json:"last_upload,omitzero"`
	// Behind is how many durable bytes of the local archive the store
	// does not hold yet, and BehindSince when the oldest of them was seen
	// durable locally (zero when it holds everything): the store lags by
	// now - BehindSince.
	Behind      int64     `json:"behind_bytes"`
	BehindSince time.Time `json:"behind_since,omitzero"`
	// LastError is the last failure, cleared by the next success.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Uploaded counts the bytes stored and the objects written.
	Uploaded int64 `json:"uploaded_bytes"`
	Objects  int64 `json:"objects"`
	Errors   int64 `json:"errors"`
}

// Lag is how long the store has been behind the local archive at now.
func (s Status) Lag(now time.Time) time.Duration {
	if s.BehindSince.IsZero() {
		return 0
	}
	return now.Sub(s.BehindSince)
}

// Status returns the shipper's current state.
func (s *Shipper) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Shipper) segMax() int64 {
	if s.SegmentMax > 0 {
		return s.SegmentMax
	}
	return DefaultSegmentMax
}

// Run ships until ctx ends. A failure of the store is logged, shown in
// Status and tried again at the next interval: archiving goes on locally,
// and the uploads catch up once the store answers. It returns ctx's error,
// or an error that trying again cannot mend (the store holds another
// archive under this source's name, or a commit point was refused because
// another writer committed).
func (s *Shipper) Run(ctx context.Context) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	enc, err := newEncoder()
	if err != nil {
		return err
	}
	s.enc = enc
	defer func() {
		if s.held != nil {
			s.held.Close()
		}
	}()
	// Snapshots ship on their own loop, which stops with this one.
	sctx, stopSnapshots := context.WithCancel(ctx)
	defer stopSnapshots()
	if s.SnapshotRoot != "" {
		done := make(chan struct{})
		defer func() {
			stopSnapshots()
			<-done
		}()
		go func() {
			defer close(done)
			s.snapshotLoop(sctx)
		}()
	}
	lastErr := ""
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		err := s.cycle(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.mu.Lock()
		if err != nil {
			s.status.LastError, s.status.LastErrorAt = err.Error(), time.Now()
			s.status.Errors++
		} else {
			s.status.LastError = ""
		}
		s.mu.Unlock()
		if err != nil && fatal(err) && !errors.Is(err, ErrDiverged) && s.ownHead(ctx) {
			// The number was taken by this writer's own commit, which
			// landed although its PUT was reported failed (a timeout):
			// shipping goes on from the store's head as it is.
			s.Log.Warn("a commit reported failed had landed in the store; shipping goes on from it", "source", s.Source, "err", err)
			s.loaded = false
			err = nil
		}
		if err != nil {
			if fatal(err) {
				s.Log.Error("shipping to the store stops", "source", s.Source, "err", err)
				return err
			}
			if err.Error() != lastErr {
				s.Log.Warn("shipping to the store failed; archiving goes on locally and the upload is tried again", "source", s.Source, "err", err)
			}
			lastErr = err.Error()
		} else if lastErr != "" {
			s.Log.Info("shipping to the store works again", "source", s.Source)
			lastErr = ""
		}
		t.Reset(s.Interval)
	}
}

// ErrDiverged means the store holds an archive of the source that the
// local one does not continue.
var ErrDiverged = errors.New("the store holds another archive of this source")

func fatal(err error) bool {
	return errors.Is(err, ErrDiverged) || errors.Is(err, storage.ErrExists) && !errors.Is(err, storage.ErrUncertain)
}

// ownHead reports whether the store's newest manifest and tip were
// written by this writer (its lease generation): then a commit point
// number already taken is its own.
func (s *Shipper) ownHead(ctx context.Context) bool {
	m, tip, err := readHead(ctx, s.Store.Plain, s.Source)
	if err != nil || s.Writer == "" {
		return false
	}
	if tip.Writer != "" { // a tip on the newest manifest is the newest commit
		return tip.Writer == s.Writer
	}
	return m.Writer == s.Writer
}

// load reads the newest committed manifest and tip.
func (s *Shipper) load(ctx context.Context) error {
	m, tip, err := readHead(ctx, s.Store.Plain, s.Source)
	if err != nil {
		return err
	}
	s.man, s.tip, s.loaded = m, tip, true
	s.setPosition()
	// Segments that no commit point names are what an upload cut short
	// left (a kill -9, a lost lease): garbage, since this writer holds the
	// lease.
	return s.collect(ctx)
}

// readHead returns the newest manifest of source and the newest tip on it.
func readHead(ctx context.Context, b storage.Backend, source string) (Manifest, Tip, error) {
	var m Manifest
	names, seqs, err := listNumbered(ctx, b, source+"/manifest.", manifestRe)
	if err != nil {
		return m, Tip{}, err
	}
	if len(names) > 0 {
		if err := getRecord(ctx, b, names[len(names)-1], &m); err != nil {
			return m, Tip{}, err
		}
		if m.Seq != seqs[len(seqs)-1] || m.Source != source || m.Version != Version {
			return m, Tip{}, corrupt(b, names[len(names)-1], "it says it is manifest %d of source %q, version %d", m.Seq, m.Source, m.Version)
		}
	}
	var tip Tip
	names, seqs, err = listNumbered(ctx, b, fmt.Sprintf("%s/tip.%010d.", source, m.Seq), tipRe)
	if err != nil {
		return m, Tip{}, err
	}
	if len(names) > 0 {
		if err := getRecord(ctx, b, names[len(names)-1], &tip); err != nil {
			return m, Tip{}, err
		}
		if tip.Seq != seqs[len(seqs)-1] || tip.Base != m.Seq || tip.Source != source {
			return m, Tip{}, corrupt(b, names[len(names)-1], "it says it is tip %d on manifest %d of source %q", tip.Seq, tip.Base, tip.Source)
		}
	}
	return m, tip, nil
}

func (s *Shipper) setPosition() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.tip.Seq > 0:
		s.status.Position = s.tip.Position
	case len(s.man.Files) > 0:
		s.status.Position = s.man.Files[len(s.man.Files)-1].EndPosition
	}
}

func (s *Shipper) lastSealed() int {
	if n := len(s.man.Files); n > 0 {
		num, _ := archive.FileNumber(s.man.Files[n-1].Name)
		return num
	}
	return s.man.PrunedThrough
}

// cycle ships what the local archive holds beyond the store.
func (s *Shipper) cycle(ctx context.Context) error {
	if !s.loaded {
		if err := s.load(ctx); err != nil {
			return err
		}
	}
	lm, err := archive.ReadManifest(s.Dir)
	if err != nil {
		return err
	}
	a, err := archive.Open(s.Dir)
	if err != nil {
		return err
	}
	files := a.Files()
	s.measure(files)
	// Sealed files, one manifest each, so that a long catch-up commits
	// as it goes.
	for _, fi := range files {
		n, _ := archive.FileNumber(fi.Name)
		if !fi.Sealed || fi.SHA256 == "" || n <= s.lastSealed() || n <= lm.PrunedThrough {
			if fi.Sealed && n <= s.lastSealed() {
				if err := s.same(fi); err != nil {
					return err
				}
			}
			continue
		}
		if err := s.shipSealed(ctx, a, fi, lm); err != nil {
			return err
		}
		s.measure(files)
	}
	if lm.PrunedThrough > s.man.PrunedThrough || len(lm.Generations) != len(s.man.Generations) {
		next := s.man
		next.Files = nil
		for _, f := range s.man.Files {
			if n, _ := archive.FileNumber(f.Name); n > lm.PrunedThrough {
				next.Files = append(next.Files, f)
			}
		}
		next.PrunedThrough = max(s.man.PrunedThrough, lm.PrunedThrough)
		next.Generations = lm.Generations
		if err := s.commitManifest(ctx, next); err != nil {
			return err
		}
	}
	// The active file is shipped only once every file before it is sealed
	// in the local manifest: the writer starts file N+1 as soon as N is
	// sealed, and records N in its manifest a moment later (once its
	// sha256 is computed). A tip for N+1 in that moment would replace N's
	// tip, and drop its segments, before any manifest of the store holds N.
	earlierSealed := true
	for _, fi := range files[:max(0, len(files)-1)] {
		if !fi.Sealed || fi.SHA256 == "" {
			earlierSealed = false
			break
		}
	}
	if len(files) > 0 && earlierSealed {
		last := files[len(files)-1]
		n, _ := archive.FileNumber(last.Name)
		if !last.Sealed && n > s.lastSealed() {
			if err := s.shipActive(ctx, a, last); err != nil {
				return err
			}
		}
	}
	s.measure(files)
	if s.dirty {
		if err := s.collect(ctx); err != nil {
			return err
		}
		s.dirty = false
	}
	if err := s.evict(files); err != nil {
		return err
	}
	return s.hold(files)
}

// evict removes the local copies of the oldest sealed files that the
// store holds, beyond LocalKeep bytes of them.
func (s *Shipper) evict(files []archive.FileInfo) error {
	if s.Evict == nil {
		return nil
	}
	last := s.lastSealed()
	var kept int64
	keepFrom := ""
	for i := len(files) - 1; i >= 0; i-- {
		fi := files[i]
		n, _ := archive.FileNumber(fi.Name)
		if n > last || !fi.Sealed {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.Dir, fi.Name)); err != nil {
			continue // evicted already
		}
		if kept+fi.Size > s.LocalKeep {
			if i+1 < len(files) {
				keepFrom = files[i+1].Name
			}
			break
		}
		kept += fi.Size
	}
	if keepFrom == "" {
		return nil
	}
	gone, err := s.Evict(keepFrom)
	if err != nil {
		return fmt.Errorf("evict local copies before %s: %w", keepFrom, err)
	}
	if len(gone) > 0 {
		s.Log.Debug("local copies of files the store holds removed (storage.local_keep)", "source", s.Source, "files", len(gone), "through", gone[len(gone)-1].Name)
	}
	return nil
}

// same checks that a file the store holds sealed is the local one.
func (s *Shipper) same(fi archive.FileInfo) error {
	for _, f := range s.man.Files {
		if f.Name == fi.Name {
			if f.SHA256 != fi.SHA256 || f.Size != fi.Size {
				return fmt.Errorf("%w: %s in the store has %d bytes, sha256 %s; the local one %d bytes, sha256 %s (was the archive directory replaced? move the store's objects of %s away, or point storage.s3.prefix elsewhere)",
					ErrDiverged, fi.Name, f.Size, f.SHA256, fi.Size, fi.SHA256, s.Source)
			}
			return nil
		}
	}
	return nil
}

// measure updates how far the store is behind the local files.
func (s *Shipper) measure(files []archive.FileInfo) {
	now := time.Now()
	if n := len(files); n > 0 {
		num, _ := archive.FileNumber(files[n-1].Name)
		m := mark{at: now, file: num, size: files[n-1].Size}
		if k := len(s.marks); k == 0 || m.after(s.marks[k-1].file, s.marks[k-1].size) {
			s.marks = append(s.marks, m)
		}
	}
	// What the store holds.
	file, size := s.lastSealed(), int64(1<<62)
	if s.tip.Seq > 0 {
		file, _ = archive.FileNumber(s.tip.File)
		size = s.tip.Size
	}
	i := 0
	for i < len(s.marks) && !s.marks[i].after(file, size) {
		i++
	}
	s.marks = s.marks[i:]
	if len(s.marks) > 4096 {
		// Thinned, the oldest kept: the lag is never underestimated.
		thin := s.marks[:1]
		for j := 2; j < len(s.marks); j += 2 {
			thin = append(thin, s.marks[j])
		}
		s.marks = thin
	}
	var behind int64
	last := s.lastSealed()
	for _, fi := range files {
		n, _ := archive.FileNumber(fi.Name)
		if n <= last {
			continue
		}
		if s.tip.Seq > 0 && s.tip.File == fi.Name {
			behind += fi.Size - s.tip.Size
		} else if fi.Transactions > 0 || fi.Sealed {
			behind += fi.Size
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Behind = behind
	switch {
	case behind <= 0:
		s.status.Behind, s.status.BehindSince = 0, time.Time{}
		s.marks = s.marks[:0]
	case len(s.marks) > 0:
		s.status.BehindSince = s.marks[0].at
	case s.status.BehindSince.IsZero():
		s.status.BehindSince = now
	}
}

// hold keeps the oldest local file the store does not hold sealed from
// being pruned locally before it is shipped.
func (s *Shipper) hold(files []archive.FileInfo) error {
	for _, fi := range files {
		n, _ := archive.FileNumber(fi.Name)
		if n <= s.lastSealed() {
			continue
		}
		if s.held != nil && s.heldN == n {
			return nil
		}
		f, err := archive.HoldFile(filepath.Join(s.Dir, fi.Name))
		if err != nil {
			return nil // pruned or sealed meanwhile: the next cycle sees it
		}
		if s.held != nil {
			s.held.Close()
		}
		s.held, s.heldN = f, n
		return nil
	}
	return nil
}

// shipSealed uploads the rest of a sealed file and commits a manifest
// that holds it.
func (s *Shipper) shipSealed(ctx context.Context, a *archive.Archive, fi archive.FileInfo, lm archive.Manifest) error {
	recs, err := a.Records(fi)
	if err != nil {
		return err
	}
	var segs []Segment
	if s.tip.Seq > 0 && s.tip.File == fi.Name {
		segs = append(segs, s.tip.Segments...)
	}
	end := int64(0)
	if len(segs) > 0 {
		end = segs[len(segs)-1].To
	}
	if end > fi.Size {
		return fmt.Errorf("%w: the store holds %d bytes of %s, the sealed local file has %d", ErrDiverged, end, fi.Name, fi.Size)
	}
	// The segments shipped while it was active become the sealed file's:
	// they must hold exactly its bytes, whose sha256 the manifest records.
	if err := s.sameSegments(fi.Name, segs, recs); err != nil {
		return err
	}
	more, err := s.upload(ctx, fi.Name, end, fi.Size, recs)
	if err != nil {
		return err
	}
	segs, err = s.merge(ctx, fi.Name, append(segs, more...), recs)
	if err != nil {
		return err
	}
	next := s.man
	next.Files = append(append([]File(nil), s.man.Files...), File{FileInfo: fi, Segments: segs})
	next.Generations = lm.Generations
	if lm.PrunedThrough > next.PrunedThrough {
		next.PrunedThrough = lm.PrunedThrough
	}
	return s.commitManifest(ctx, next)
}

// shipActive uploads the active file's new durable bytes and commits a
// tip that holds them.
func (s *Shipper) shipActive(ctx context.Context, a *archive.Archive, fi archive.FileInfo) error {
	if fi.Transactions == 0 {
		return nil
	}
	recs, err := a.Records(fi)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	var segs []Segment
	if s.tip.Seq > 0 && s.tip.File == fi.Name {
		segs = append(segs, s.tip.Segments...)
	}
	from := int64(0)
	if len(segs) > 0 {
		from = segs[len(segs)-1].To
	}
	if !s.tipChecked && len(segs) > 0 {
		// What an earlier process shipped of this file must be what
		// this one continues.
		if err := s.sameSegments(fi.Name, segs, recs); err != nil {
			return err
		}
	}
	s.tipChecked = true
	to := int64(recs[len(recs)-1].End)
	if to < from {
		return fmt.Errorf("%w: the store holds %d bytes of %s, the local active file has %d durable bytes", ErrDiverged, from, fi.Name, to)
	}
	if to == from {
		return nil
	}
	more, err := s.upload(ctx, fi.Name, from, to, recs)
	if err != nil {
		return err
	}
	segs, err = s.merge(ctx, fi.Name, append(segs, more...), recs)
	if err != nil {
		return err
	}
	pos := fi.StartPosition
	for _, r := range recs {
		pos = pos.With(r.GTID)
	}
	tip := Tip{Version: Version, Source: s.Source, Base: s.man.Seq, Seq: s.tip.Seq + 1, Writer: s.Writer,
		File: fi.Name, Segments: segs, Size: to, Position: pos, LastTime: recs[len(recs)-1].Time}
	if s.tip.Base != s.man.Seq {
		tip.Seq = 1
	}
	if err := s.commit(ctx, tipName(s.Source, tip.Base, tip.Seq), &tip); err != nil {
		return err
	}
	old := s.tip
	s.tip = tip
	s.setPosition()
	// The tip before the previous one is no longer the newest fallback.
	if old.Seq > 1 && old.Base == tip.Base {
		s.Store.Plain.Delete(ctx, tipName(s.Source, old.Base, old.Seq-1))
	}
	return s.dropUnused(ctx, old.Segments, segs)
}

// uploads is how many segments a shipper uploads at once: a store far
// away answers each request after a round trip, and compression and
// encryption use a core each. Memory: about 2 x SegmentMax each.
const uploads = 3

// upload stores bytes [from, to) of the local file name as segments of at
// most SegmentMax bytes, each followed by the records that end in it, up to
// uploads at once.
func (s *Shipper) upload(ctx context.Context, name string, from, to int64, recs []archive.Record) ([]Segment, error) {
	if from == to {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(s.Dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Segment
	for at := from; at < to; at = min(to, at+s.segMax()) {
		out = append(out, Segment{Name: segmentName(s.Source, name, at, min(to, at+s.segMax()), s.Writer), From: at, To: min(to, at+s.segMax())})
	}
	// Buffers reused by each uploader.
	bufs := make([]struct{ data, comp []byte }, uploads)
	err = parallel(ctx, uploads, len(out), func(ctx context.Context, w, i int) error {
		return s.uploadOne(ctx, f, &out[i], recs, &bufs[w].data, &bufs[w].comp)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// uploadOne stores the segment seg of the file f; buf and comp are the
// caller's buffers, reused.
func (s *Shipper) uploadOne(ctx context.Context, f *os.File, seg *Segment, recs []archive.Record, buf, comp *[]byte) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	n := seg.To - seg.From
	if int64(cap(*buf)) < n {
		*buf = make([]byte, n)
	}
	data := (*buf)[:n]
	if _, err := f.ReadAt(data, seg.From); err != nil {
		return fmt.Errorf("read %s at %d: %w", f.Name(), seg.From, err)
	}
	plain := sha256.New()
	plain.Write(data)
	var idx []byte
	for _, r := range recs {
		if int64(r.End) > seg.From && int64(r.End) <= seg.To {
			idx = r.Append(idx)
			seg.Records++
		}
	}
	plain.Write(idx)
	seg.PlainSHA256 = hex.EncodeToString(plain.Sum(nil))
	*comp = s.enc.EncodeAll(idx, s.enc.EncodeAll(data, (*comp)[:0])) // two frames: data, records
	size, sum, err := s.Store.putData(ctx, seg.Name, bytes.NewReader(*comp), int64(len(*comp)))
	if err != nil {
		return err
	}
	seg.StoredSize, seg.StoredSHA256 = size, sum
	s.mu.Lock()
	s.status.Uploaded += size
	s.status.Objects++
	s.mu.Unlock()
	return nil
}

// merge replaces the newest small segments of a file by one when it has
// more than maxSegments, so that a file shipped every second for an hour
// is not thousands of objects.
func (s *Shipper) merge(ctx context.Context, name string, segs []Segment, recs []archive.Record) ([]Segment, error) {
	if len(segs) <= maxSegments {
		return segs, nil
	}
	k := len(segs)
	for k > 0 && segs[len(segs)-1].To-segs[k-1].From <= s.segMax() {
		k--
	}
	if len(segs)-k < 2 {
		return segs, nil
	}
	merged, err := s.upload(ctx, name, segs[k].From, segs[len(segs)-1].To, recs)
	if err != nil {
		return nil, err
	}
	return append(append([]Segment(nil), segs[:k]...), merged...), nil
}

// commit writes a commit point after checking the lease.
func (s *Shipper) commit(ctx context.Context, name string, v any) error {
	if s.Check != nil {
		if err := s.Check(ctx); err != nil {
			return fmt.Errorf("not committing %s: %w", trimSource(s.Source, name), err)
		}
	}
	if err := putRecord(ctx, s.Store.Plain, name, v); err != nil {
		return err
	}
	s.mu.Lock()
	s.status.LastUpload = time.Now()
	s.status.Objects++
	s.mu.Unlock()
	return nil
}

func (s *Shipper) commitManifest(ctx context.Context, next Manifest) error {
	next.ManifestSHA256 = ""
	next.Version, next.Source, next.Seq, next.Writer, next.Written = Version, s.Source, s.man.Seq+1, s.Writer, time.Now().UTC()
	if err := s.commit(ctx, manifestName(s.Source, next.Seq), &next); err != nil {
		return err
	}
	// The tip's file, if sealed now, is in the manifest; a new tip
	// begins on the new manifest.
	s.man, s.tip = next, Tip{}
	s.setPosition()
	// Older commit points, and the segments only they named (of pruned
	// files, replaced by a merge), are garbage now: collected at the end
	// of the cycle.
	s.dirty = true
	return nil
}

// DefaultGrace is Shipper.Grace's default: a reader fetches the active
// file's segments first, within moments of opening the head.
const DefaultGrace = 10 * time.Minute

// retire deletes the segments names once they have been unused for the
// grace period (see Shipper.Grace), and starts that period for those seen
// unused for the first time.
func (s *Shipper) retire(ctx context.Context, names []string) {
	grace := s.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	if s.retired == nil {
		s.retired = map[string]time.Time{}
	}
	now := time.Now()
	for _, name := range names {
		since, seen := s.retired[name]
		if !seen && grace > 0 {
			s.retired[name] = now
			continue
		}
		if grace > 0 && now.Sub(since) < grace {
			continue
		}
		if err := s.Store.Plain.Delete(ctx, name); err != nil && !errors.Is(err, storage.ErrNotExist) {
			s.Log.Debug("could not delete an object no longer used; it is tried again later", "source", s.Source, "object", name, "err", err)
			continue
		}
		delete(s.retired, name)
	}
}

// dropUnused retires the segments of old that new does not hold (those
// a merge replaced).
func (s *Shipper) dropUnused(ctx context.Context, old, new []Segment) error {
	keep := map[string]bool{}
	for _, g := range new {
		keep[g.Name] = true
	}
	var drop []string
	for _, g := range old {
		if !keep[g.Name] {
			drop = append(drop, g.Name)
		}
	}
	s.retire(ctx, drop)
	return nil
}

// collect deletes what no commit point names any more: segments of files
// that are neither in the manifest nor in the tip (retention removed them,
// a merge replaced them, an upload cut short left them), tips of older
// manifests, manifests but the newest two. Only the lease holder collects.
// Failures are left for the next time.
func (s *Shipper) collect(ctx context.Context) error {
	used := map[string]bool{}
	for _, f := range s.man.Files {
		for _, g := range f.Segments {
			used[g.Name] = true
		}
	}
	for _, g := range s.tip.Segments {
		used[g.Name] = true
	}
	var drop, segments []string
	err := s.Store.Plain.List(ctx, s.Source+"/", func(i storage.Info) error {
		rest := strings.TrimPrefix(i.Name, s.Source+"/")
		switch {
		case strings.HasPrefix(rest, "binlog.") && strings.HasSuffix(rest, ".zst"):
			if !used[i.Name] {
				segments = append(segments, i.Name)
			}
		case tipRe.MatchString(i.Name):
			m := tipRe.FindStringSubmatch(i.Name)
			if m[1] != fmt.Sprintf("%010d", s.man.Seq) {
				drop = append(drop, i.Name)
			}
		case manifestRe.MatchString(i.Name):
			m := manifestRe.FindStringSubmatch(i.Name)
			if m[1] < fmt.Sprintf("%010d", s.man.Seq-1) {
				drop = append(drop, i.Name)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range drop {
		if err := s.Store.Plain.Delete(ctx, name); err != nil {
			s.Log.Debug("could not delete an object no longer used; it is tried again later", "source", s.Source, "object", name, "err", err)
		}
	}
	s.retire(ctx, segments)
	return nil
}

// snapshotLoop ships snapshots until ctx ends; it reports failures like
// Run does.
func (s *Shipper) snapshotLoop(ctx context.Context) {
	lastErr := ""
	for {
		err := s.shipSnapshots(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.mu.Lock()
			s.status.LastError, s.status.LastErrorAt = err.Error(), time.Now()
			s.status.Errors++
			s.mu.Unlock()
			if err.Error() != lastErr {
				s.Log.Warn("shipping snapshots to the store failed; tried again later", "source", s.Source, "err", err)
			}
			lastErr = err.Error()
		} else {
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(snapshotInterval):
		}
	}
}

// Flush ships what the local archive holds beyond the store once, now: on
// a clean stop, before the lease is released.
func (s *Shipper) Flush(ctx context.Context) error {
	if s.enc == nil {
		enc, err := newEncoder()
		if err != nil {
			return err
		}
		s.enc = enc
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	err := s.cycle(ctx)
	if s.held != nil {
		s.held.Close()
		s.held = nil
	}
	return err
}

// sameSegments checks that segments shipped earlier hold the local file's
// bytes and records (their content's sha256).
func (s *Shipper) sameSegments(name string, segs []Segment, recs []archive.Record) error {
	if len(segs) == 0 {
		return nil
	}
	f, err := os.Open(filepath.Join(s.Dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	for _, g := range segs {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, g.From, g.To-g.From)); err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		var idx []byte
		for _, r := range recs {
			if int64(r.End) > g.From && int64(r.End) <= g.To {
				idx = r.Append(idx)
			}
		}
		h.Write(idx)
		if got := hex.EncodeToString(h.Sum(nil)); got != g.PlainSHA256 {
			return fmt.Errorf("%w: %s in the store holds other bytes at %d-%d than the local file (sha256 %s, local %s)", ErrDiverged, trimSource(s.Source, g.Name), g.From, g.To, g.PlainSHA256, got)
		}
	}
	return nil
}

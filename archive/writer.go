package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// DefaultMaxFileSize is the size after which the writer starts a new file
// at the next transaction boundary.
const DefaultMaxFileSize = 256 << 20

// Durable describes what is durable in the archive.
type Durable struct {
	Position understudy.Position
	// Time is the commit time of the last durable transaction (unix seconds).
	Time uint32
	// Bytes is the size of all archived files up to the durable end.
	Bytes int64
	// File and Offset locate the durable end.
	File   string
	Offset int64
}

// Writer appends the events of a source's stream to its archive, cut into
// whole transactions (Write). All methods are safe for concurrent use. A
// transaction counts once Write returned Committed for it and a later Sync
// returned; OpenWriter cuts anything after the last whole transaction.
type Writer struct {
	dir         string
	log         *slog.Logger
	maxFileSize int64
	maxFileAge  time.Duration
	now         func() time.Time

	// syncMu serialises syncs with everything that replaces or closes the
	// active file. Lock order: syncMu, then mu. An fdatasync runs holding
	// only syncMu, so the stream keeps appending while the disk flushes.
	syncMu sync.Mutex
	mu     sync.Mutex
	lock   *os.File

	manifestMu sync.Mutex
	manifest   Manifest
	// sealErr is the sealer's first failure: files sealed after it are not
	// recorded either, so that the manifest stays in file order; the next
	// recovery (Reopen, or a restart) records them all.
	sealErr    error
	sealq      chan FileInfo
	sealing    sync.WaitGroup
	recovering bool // seal synchronously

	// the active file
	num     int
	f       *os.File
	idx     *os.File
	bw      *bufio.Writer
	bin     *binlog.Writer
	fde     []byte
	start   understudy.Position
	records int64
	first   uint32
	created time.Time // when understudy created the active file

	// primaryCreated is the create timestamp of the primary's last
	// format description that had one; createdRead says the archived
	// files were read for it (see lastPrimaryCreated).
	primaryCreated uint32
	createdRead    bool

	// asm cuts the stream into transactions: the open one is asm.cur.
	asm        assembler
	pendingIdx []byte
	pos        understudy.Position // after the last committed transaction
	lastTime   uint32
	committed  int64 // end of the last committed unit in the active file
	commits    chan struct{}
	sealed     int64 // bytes in sealed files
	durable    Durable
	notify     chan struct{}
	// syncErr is the first failed fsync of the archive's files. Linux
	// reports a writeback error once, so a second fdatasync of the same
	// file may succeed with the data lost: after one, nothing is synced,
	// marked durable or recovered again by this Writer (see failSync).
	syncErr error
	// datasync is fdatasync(2) of the files' data (tests fail it).
	datasync func(fd int) error
}

// DefaultMaxFileAge is the age after which the writer seals the active
// file at the next transaction boundary, or at once when it is idle.
const DefaultMaxFileAge = time.Hour

// WriterOptions tunes a Writer.
type WriterOptions struct {
	MaxFileSize int64 // default DefaultMaxFileSize
	// MaxFileAge is measured by the wall clock from when understudy
	// created the file (default DefaultMaxFileAge; negative: no limit).
	MaxFileAge time.Duration
	Logger     *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// OpenWriter locks the archive directory dir of one source, creating it if
// needed, and recovers it: an incomplete transaction at the tail of the
// active file is cut off, the index is rebuilt from the data where it lags,
// and files left unsealed by a crash are sealed.
func OpenWriter(dir string, opts WriterOptions) (*Writer, error) {
	w := &Writer{dir: dir, log: opts.Logger, maxFileSize: opts.MaxFileSize, maxFileAge: opts.MaxFileAge, now: opts.Now,
		notify: make(chan struct{}), commits: make(chan struct{}, 1), datasync: syscall.Fdatasync}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.maxFileAge == 0 {
		w.maxFileAge = DefaultMaxFileAge
	}
	if w.maxFileSize <= 0 {
		w.maxFileSize = DefaultMaxFileSize
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("archive directory %s is not usable: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, LockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("archive directory %s is not writable: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s: %w", dir, understudy.ErrLocked)
	}
	w.lock = lock
	if n, err := Tighten(dir); err != nil {
		w.log.Warn("could not make the archive private", "dir", dir, "err", err)
	} else if n > 0 {
		w.log.Warn("the archive was open to other users (created by hand, or by an older understudy): its files are now 0600 and its directories 0700", "dir", dir, "changed", n)
	}
	if err := w.recover(); err != nil {
		w.closeFiles()
		lock.Close()
		return nil, err
	}
	w.sealq = make(chan FileInfo, 16)
	go w.sealer(w.sealq)
	return w, nil
}

func (w *Writer) recover() error {
	m, err := readManifest(w.dir)
	if err != nil {
		return err
	}
	if m.unchecked {
		// Written by a version without the manifest's own checksum:
		// protect it now (it is rewritten at the next seal otherwise).
		if err := writeManifest(w.dir, m); err != nil {
			var se *SyncError
			if errors.As(err, &se) {
				return err
			}
			w.log.Warn("could not add a checksum to the manifest; it is added at the next seal", "dir", w.dir, "err", err)
		} else {
			m.unchecked = false
		}
	}
	w.manifestMu.Lock()
	w.manifest = m
	w.manifestMu.Unlock()
	if tmps, _ := filepath.Glob(filepath.Join(w.dir, "*"+tmpSuffix)); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	// Files that retention removed from the manifest but a crash left on
	// disk.
	if all, err := listFiles(w.dir, 0); err == nil {
		for _, n := range all {
			if n <= m.PrunedThrough {
				p := filepath.Join(w.dir, FileName(n))
				os.Remove(p + indexSuffix)
				os.Remove(p)
			}
		}
	}
	nums, err := listFiles(w.dir, m.PrunedThrough)
	if err != nil {
		return err
	}
	w.num = m.PrunedThrough
	sealed := map[string]bool{}
	for _, fi := range m.Files {
		sealed[fi.Name] = true
		w.sealed += fi.Size
		w.pos = fi.EndPosition
		w.lastTime = fi.LastTime
	}
	for _, fi := range m.Files {
		// Evicted files are in the manifest only.
		if n, _ := fileNumber(fi.Name); n > w.num {
			w.num = n
		}
	}
	var unsealed []int
	for _, n := range nums {
		if !sealed[FileName(n)] {
			unsealed = append(unsealed, n)
		}
		w.num = max(w.num, n)
	}
	newest := 0 // the first file of the newest recorded generation
	if len(m.Generations) > 0 {
		newest, _ = fileNumber(m.Generations[len(m.Generations)-1].FirstFile)
	}
	for i, n := range unsealed {
		if err := w.openActive(n); err != nil {
			return err
		}
		// Every file but the last is sealed, and so is the last when a
		// newer generation was recorded after it (a crash between the
		// generation and its first file, with the seal not recorded).
		if i < len(unsealed)-1 || n < newest {
			if err := w.seal(); err != nil {
				return err
			}
		}
	}
	// A generation recorded before a crash kept its first file from being
	// created: the archive resumes at the generation's start.
	if newest > w.num {
		w.pos, w.lastTime = m.Generations[len(m.Generations)-1].StartPosition, 0
		w.num = newest - 1
	}
	if w.primaryCreated == 0 && !w.createdRead {
		w.primaryCreated, w.createdRead = w.lastPrimaryCreated(), true
	}
	w.durable = w.durableLocked()
	return nil
}

// lastPrimaryCreated returns the create timestamp of the newest archived
// file whose format description has one: the file the primary's restart
// began (files that rotation starts have none). Without it, the first
// format description after a restart of understudy that has one (the
// primary's first binlog since it started, where streaming resumes) would
// look like a restart of the primary, and the archive would tell its
// replicas to drop their temporary tables. 0 when no file has one, or the
// newest that might is no longer here (evicted to object storage or
// pruned): then any create timestamp starts a new file, as before. Only
// the newest 64 files are read: streaming can resume in the primary's
// first binlog only while the archive's newest files hold it.
func (w *Writer) lastPrimaryCreated() uint32 {
	for n := w.num; n > 0 && n > w.num-64; n-- {
		f, err := os.Open(filepath.Join(w.dir, FileName(n)))
		if err != nil {
			return 0
		}
		h, err := readHeader(f)
		f.Close()
		if err != nil {
			return 0
		}
		if fd, err := binlog.ParseFormatDescription(h.fde); err == nil && fd.CreateTimestamp != 0 {
			return fd.CreateTimestamp
		}
	}
	return 0
}

// Began reports whether the archive has begun: it has a file or a
// generation. An archive that has not begun starts with StartGeneration.
func (w *Writer) Began() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f != nil || w.num > 0 || len(w.manifest.Generations) > 0
}

// Generation returns the current generation (an archive from before
// generations is generation 1 from its first file).
func (w *Writer) Generation() Generation {
	w.manifestMu.Lock()
	defer w.manifestMu.Unlock()
	if n := len(w.manifest.Generations); n > 0 {
		return w.manifest.Generations[n-1]
	}
	g := Generation{ID: 1, Reason: "archive began"}
	if len(w.manifest.Files) > 0 {
		g.FirstFile, g.StartPosition = w.manifest.Files[0].Name, w.manifest.Files[0].StartPosition
	}
	return g
}

// StartGeneration begins a new generation at start: the active file, if
// any, is sealed, the generation (and its gap, if it follows one) is
// recorded durably in the manifest, and the next file begins at start. The
// first generation of an empty archive is started the same way, with no
// gap. Nothing of an older generation is changed.
func (w *Writer) StartGeneration(start understudy.Position, reason string, gap *understudy.Gap) (Generation, error) {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.asm.writing() {
		return Generation{}, errors.New("new generation inside a transaction")
	}
	if w.f != nil {
		if err := w.seal(); err != nil {
			return Generation{}, err
		}
	}
	w.sealing.Wait()
	w.manifestMu.Lock()
	defer w.manifestMu.Unlock()
	if w.sealErr != nil {
		// The sealed file is not in the manifest: recovery records it
		// first, then the generation can begin.
		return Generation{}, fmt.Errorf("new generation: the previous file is not recorded yet: %w", w.sealErr)
	}
	m := w.manifest
	m.Generations = append([]Generation(nil), m.Generations...)
	if len(m.Generations) == 0 && len(m.Files) > 0 {
		m.Generations = append(m.Generations, Generation{ID: 1, FirstFile: m.Files[0].Name, StartPosition: m.Files[0].StartPosition, Reason: "archive began"})
	}
	g := Generation{ID: len(m.Generations) + 1, FirstFile: FileName(w.num + 1), StartPosition: start, Started: w.now().UTC(), Reason: reason}
	if len(m.Generations) > 0 {
		g.ID = m.Generations[len(m.Generations)-1].ID + 1
	}
	if gap != nil {
		gp := *gap
		gp.Generation = g.ID
		g.Gap = &gp
	}
	m.Generations = append(m.Generations, g)
	if err := writeManifest(w.dir, m); err != nil {
		return Generation{}, err
	}
	w.manifest = m
	w.pos, w.start, w.records, w.first = start, start, 0, 0
	w.durable = w.durableLocked()
	w.durable.Position = start
	return g, nil
}

// openActive opens file n for appending after recovering its tail.
func (w *Writer) openActive(n int) error {
	name := FileName(n)
	path := filepath.Join(w.dir, name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	h, err := readHeader(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	idx, err := os.OpenFile(path+indexSuffix, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		f.Close()
		return err
	}
	kept := false
	defer func() {
		if !kept { // every failure, a full disk's included, is tried again
			f.Close()
			idx.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	ib, err := io.ReadAll(idx)
	if err != nil {
		return err
	}
	recs := parseIndex(ib, st.Size())
	// A record must start where the previous transaction ended, or after
	// events of no transaction: from a hole on (records never written, a
	// damaged record), the records are rebuilt from the data.
	prevEnd := h.end
	for i, r := range recs {
		if int64(r.Start) != prevEnd && !onlyLoose(f, prevEnd, int64(r.Start), h.checksum) {
			w.log.Warn("archived file's index skips data: rebuilding its records from the data", "file", path, "record", i, "gtid", r.GTID.String(), "start", r.Start, "previous_end", prevEnd)
			recs = recs[:i]
			break
		}
		prevEnd = int64(r.End)
	}
	off := h.end
	if len(recs) > 0 {
		off = int64(recs[len(recs)-1].End)
	}
	res, err := scanTail(f, off, h.checksum)
	if err != nil {
		return err
	}
	if res.end < st.Size() {
		if whole := int64(len(ib) / RecordSize * RecordSize); int64(len(recs)*RecordSize) < whole {
			// The index held more records than survive: durable data is
			// damaged, not merely a torn tail. Streaming resumes before
			// it, so the primary sends it again; if the primary purged
			// it, the archiver records a gap.
			w.log.Error("archived file damaged: cutting it at the damage; the transactions after it are fetched again from the primary",
				"file", path, "cut_at", res.end, "cut_bytes", st.Size()-res.end, "indexed_transactions", whole/RecordSize, "kept", len(recs)+len(res.records), "reason", res.torn)
		} else {
			w.log.Warn("cutting incomplete tail of archived file; it is fetched again from the primary",
				"file", path, "durable_end", res.end, "cut_bytes", st.Size()-res.end, "reason", res.torn)
		}
		if err := f.Truncate(res.end); err != nil {
			return err
		}
	}
	valid := int64(len(recs) * RecordSize)
	recs = append(recs, res.records...)
	// The index is rewritten only where it differs from what the data
	// holds, so that recovery on a full disk needs no new space.
	if valid != int64(len(ib)) || len(res.records) > 0 {
		if err := idx.Truncate(valid); err != nil {
			return fmt.Errorf("write %s: %w", idx.Name(), err)
		}
		tail := make([]byte, len(res.records)*RecordSize)
		for i, r := range res.records {
			r.put(tail[i*RecordSize:])
		}
		if _, err := idx.WriteAt(tail, valid); err != nil {
			return fmt.Errorf("write %s: %w", idx.Name(), err)
		}
		if err := idx.Sync(); err != nil {
			return &SyncError{Path: idx.Name(), Err: err}
		}
	}
	ib = nil
	if err := f.Sync(); err != nil {
		return &SyncError{Path: path, Err: err}
	}
	if _, err := f.Seek(res.end, io.SeekStart); err != nil {
		return err
	}
	if _, err := idx.Seek(int64(len(recs)*RecordSize), io.SeekStart); err != nil {
		return err
	}
	kept = true
	w.num, w.f, w.idx, w.fde, w.start, w.created = n, f, idx, h.fde, h.start, h.created
	w.asm = assembler{checksum: h.checksum}
	if fd, err := binlog.ParseFormatDescription(h.fde); err == nil && fd.CreateTimestamp != 0 {
		w.primaryCreated = fd.CreateTimestamp
	}
	w.bw = bufio.NewWriterSize(f, 1<<20)
	w.bin = binlog.NewWriter(w.bw, res.end, h.checksum)
	w.committed = res.end
	w.records = int64(len(recs))
	w.pos = h.start
	w.first = 0
	for _, r := range recs {
		w.pos = w.pos.With(r.GTID)
		if w.first == 0 {
			w.first = r.Time
		}
		w.lastTime = r.Time
	}
	return nil
}

// Position is the archive position after the last committed transaction;
// it is where streaming resumes.
func (w *Writer) Position() understudy.Position {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pos
}

// Durable returns what Sync made durable.
func (w *Writer) Durable() Durable {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.durable
}

// Notify returns a channel that is closed at the next Sync that makes new
// transactions durable.
func (w *Writer) Notify() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.notify
}

// Dir is the archive directory of the source.
func (w *Writer) Dir() string { return w.dir }

// Result is what Write did with an event.
type Result struct {
	Kind Kind
	// Record is the transaction that a Committed event completed.
	Record Record
	// Binlog is the primary's binlog file that a Rotate event names.
	Binlog string
	// Time is the timestamp in the event's header (0 in heartbeats and in
	// the ROTATE that begins a stream).
	Time uint32
}

// Write archives the next event of the stream and says what it did with it
// (see Kind). The events of a transaction are appended as they come, and a
// transaction counts once Write returned Committed for it and a later Sync
// returned. A transaction that the archive's position already contains is
// skipped, with a warning, never archived twice. A format description that
// differs from the active file's starts a new file, and so does a
// transaction that begins when the active file is due (full, or older than
// the maximum age): a transaction is never split across files.
func (w *Writer) Write(ev []byte) (Result, error) {
	if len(ev) < binlog.HeaderSize {
		return Result{}, fmt.Errorf("event of %d bytes is shorter than its header", len(ev))
	}
	switch ev[4] {
	case binlog.FormatDescriptionEvent:
		return w.setFormat(ev)
	case binlog.GTIDEvent:
		if err := w.rotateBeforeBegin(ev); err != nil {
			return Result{}, err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var off int64
	if w.bin != nil {
		off = w.bin.Offset()
	}
	k, err := w.asm.next(ev, off, &w.pos)
	if err != nil {
		return Result{}, fmt.Errorf("%s event out of place in the stream: %w", binlog.TypeName(ev[4]), err)
	}
	r := Result{Kind: k, Time: binlogTimestamp(ev)}
	if k.written() && w.f == nil {
		return r, fmt.Errorf("%s event before any format description", binlog.TypeName(ev[4]))
	}
	switch k {
	case Appended:
		return r, w.bin.WriteEvent(ev)
	case Committed:
		if err := w.bin.WriteEvent(ev); err != nil {
			return r, err
		}
		r.Record = w.asm.cur
		w.commitLocked(r.Record)
	case Alone:
		w.log.Warn("event outside any transaction", "type", binlog.TypeName(ev[4]))
		if err := w.bin.WriteEvent(ev); err != nil {
			return r, err
		}
		w.committed = w.bin.Offset()
	case Skipped:
		if ev[4] == binlog.GTIDEvent {
			w.log.Warn("skipping a transaction that is already archived", "gtid", w.asm.cur.GTID.String())
		}
	case Rotate:
		r.Binlog = w.asm.rotateName(ev)
	}
	return r, nil
}

// setFormat handles the source's format description for what follows: if
// it differs from the active file's, or the primary restarted, a new file
// is started.
func (w *Writer) setFormat(fde []byte) (Result, error) {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.asm.next(fde, 0, nil); err != nil {
		return Result{}, err
	}
	r := Result{Kind: Format, Time: binlogTimestamp(fde)}
	// A new create timestamp means the primary restarted: start a new file
	// so that replicas of the archive learn it too.
	fd, _ := binlog.ParseFormatDescription(fde)
	restarted := fd.CreateTimestamp != 0 && fd.CreateTimestamp != w.primaryCreated
	if fd.CreateTimestamp != 0 {
		w.primaryCreated = fd.CreateTimestamp
	}
	if w.f != nil && binlog.SameFormat(w.fde, fde) && !restarted {
		return r, nil
	}
	if w.f != nil {
		if err := w.seal(); err != nil {
			return r, err
		}
	}
	return r, w.create(fde)
}

// rotateBeforeBegin seals a due active file before the transaction whose
// GTID event is ev begins (unless it is skipped).
func (w *Writer) rotateBeforeBegin(ev []byte) error {
	w.mu.Lock()
	due := w.f != nil && !w.asm.g.InGroup() && w.dueLocked()
	if due {
		if gi, err := binlog.ParseGTIDEvent(ev, w.asm.checksum); err == nil && w.pos.Contains(gi.GTID) {
			due = false
		}
	}
	w.mu.Unlock()
	if !due {
		return nil
	}
	return w.rotate()
}

// commitLocked records a transaction whose last event was written.
func (w *Writer) commitLocked(r Record) {
	n := len(w.pendingIdx)
	w.pendingIdx = append(w.pendingIdx, make([]byte, RecordSize)...)
	r.put(w.pendingIdx[n:])
	w.committed = w.bin.Offset()
	w.pos = w.pos.With(r.GTID)
	w.lastTime = r.Time
	if w.first == 0 {
		w.first = r.Time
	}
	w.records++
	select {
	case w.commits <- struct{}{}:
	default:
	}
}

// activePath is the path of the active file (its *os.File may carry the
// temporary name it was created under).
func (w *Writer) activePath() string { return filepath.Join(w.dir, FileName(w.num)) }

// dueLocked reports whether the active file should be sealed at this
// transaction boundary: it is full, or it holds transactions and is older
// than the maximum age.
func (w *Writer) dueLocked() bool {
	if w.bin.Offset() >= w.maxFileSize {
		return true
	}
	return w.maxFileAge > 0 && w.records > 0 && w.now().Sub(w.created) >= w.maxFileAge
}

func (w *Writer) rotate() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil || w.asm.writing() || !w.dueLocked() {
		return nil
	}
	w.log.Debug("sealing archived file", "file", FileName(w.num), "bytes", w.committed, "age", w.now().Sub(w.created).Round(time.Second).String())
	if err := w.seal(); err != nil {
		return err
	}
	return w.create(binlog.WithoutCreated(w.fde))
}

// RotateIfDue seals the active file when it is due (see
// archive.max_file_age) and no transaction is open: an idle primary's
// files get sealed too. It reports whether it sealed one.
func (w *Writer) RotateIfDue() (bool, error) {
	w.mu.Lock()
	due := w.f != nil && !w.asm.writing() && w.dueLocked()
	num := w.num
	w.mu.Unlock()
	if !due {
		return false, nil
	}
	if err := w.rotate(); err != nil {
		return false, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.num != num, nil
}

// Commits returns a channel that receives a value after transactions are
// committed (at most one pending value): a cue to Sync.
func (w *Writer) Commits() <-chan struct{} { return w.commits }

// Reopen forgets everything in memory and recovers the archive from disk,
// as OpenWriter does: an open transaction is dropped, and after a failed
// write or sync the position goes back to what the files really hold. Call
// it whenever a stream ends, before resuming from Position.
func (w *Writer) Reopen() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sealing.Wait()
	if w.syncErr != nil {
		return w.syncErr
	}
	w.recovering = true
	defer func() { w.recovering = false }()
	w.closeFiles()
	w.manifestMu.Lock()
	w.sealErr = nil
	w.manifest = Manifest{}
	w.manifestMu.Unlock()
	w.num, w.bw, w.bin, w.fde = 0, nil, nil, nil
	w.start, w.records, w.first, w.pendingIdx, w.asm = understudy.Position{}, 0, 0, nil, assembler{}
	w.pos, w.lastTime, w.committed, w.sealed, w.durable = understudy.Position{}, 0, 0, 0, Durable{}
	return w.failSync(w.recover())
}

// failSync records err if it is a failed fsync, and returns it. The
// caller holds mu.
func (w *Writer) failSync(err error) error {
	var se *SyncError
	if w.syncErr == nil && errors.As(err, &se) {
		w.syncErr = err
	}
	return err
}

// Sync makes every committed transaction durable: data first, then index.
// The stream may go on appending while the fdatasync runs.
func (w *Writer) Sync() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	if w.syncErr != nil {
		w.mu.Unlock()
		return w.syncErr
	}
	if !w.dirtyLocked() {
		w.mu.Unlock()
		return nil
	}
	if err := w.bw.Flush(); err != nil {
		w.mu.Unlock()
		return fmt.Errorf("write %s: %w", w.activePath(), unwrapPath(err))
	}
	f, idx, pending, path := w.f, w.idx, w.pendingIdx, w.activePath()
	w.pendingIdx = nil
	d := w.durableLocked()
	w.mu.Unlock()

	err := w.syncFiles(f, path, idx, pending)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		// The records not written are written with the next ones: an
		// index must not skip a transaction (a full disk may come back
		// before this session ends).
		w.pendingIdx = append(pending, w.pendingIdx...)
		return w.failSync(err)
	}
	w.markDurable(d)
	return nil
}

// syncHeld is Sync for callers that hold both syncMu and mu.
func (w *Writer) syncHeld() error {
	if w.syncErr != nil {
		return w.syncErr
	}
	if !w.dirtyLocked() {
		return nil
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", w.activePath(), unwrapPath(err))
	}
	if err := w.syncFiles(w.f, w.activePath(), w.idx, w.pendingIdx); err != nil {
		return w.failSync(err)
	}
	w.pendingIdx = nil
	w.markDurable(w.durableLocked())
	return nil
}

func (w *Writer) dirtyLocked() bool {
	return w.f != nil && (w.durable.Offset != w.committed || w.durable.File != FileName(w.num) || len(w.pendingIdx) > 0)
}

func (w *Writer) markDurable(d Durable) {
	w.durable = d
	close(w.notify)
	w.notify = make(chan struct{})
}

// syncFiles makes a binlog file durable, then appends index records to its
// index and makes that durable.
func (w *Writer) syncFiles(f *os.File, path string, idx *os.File, records []byte) error {
	if err := w.datasync(int(f.Fd())); err != nil {
		return &SyncError{Path: path, Err: err}
	}
	if len(records) == 0 {
		return nil
	}
	if n, err := idx.Write(records); err != nil {
		// A partial record is cut when the index is next read or
		// recovered; the data file holds the transactions anyway.
		if n > 0 {
			if st, serr := idx.Stat(); serr == nil {
				idx.Truncate(st.Size() - int64(n))
				idx.Seek(st.Size()-int64(n), io.SeekStart)
			}
		}
		return fmt.Errorf("write %s: %w", idx.Name(), unwrapPath(err))
	}
	if err := w.datasync(int(idx.Fd())); err != nil {
		return &SyncError{Path: idx.Name(), Err: err}
	}
	return nil
}

func (w *Writer) durableLocked() Durable {
	d := Durable{Position: w.pos, Time: w.lastTime, Bytes: w.sealed + w.committed}
	if w.f != nil {
		d.File, d.Offset = FileName(w.num), w.committed
	}
	return d
}

// seal syncs the active file, truncates it to its last whole transaction
// and closes it. Its sha256 and its manifest entry are written by the
// sealer goroutine, off the stream's path; a crash before that leaves the
// file unsealed, and recovery seals it.
func (w *Writer) seal() error {
	if err := w.syncHeld(); err != nil {
		return err
	}
	name := FileName(w.num)
	if err := w.f.Truncate(w.committed); err != nil { // drops bytes of an aborted open transaction
		return fmt.Errorf("seal %s: %w", w.activePath(), unwrapPath(err))
	}
	fi := FileInfo{
		Name: name, Size: w.committed, StartPosition: w.start, EndPosition: w.pos,
		Transactions: w.records, FirstTime: w.first, LastTime: w.lastTime, Sealed: true,
	}
	if w.records == 0 {
		fi.FirstTime, fi.LastTime = 0, 0
	}
	w.sealed += w.committed
	w.closeFiles()
	w.committed = 0
	if w.recovering || w.sealq == nil {
		return w.record(fi)
	}
	w.sealing.Add(1)
	w.sealq <- fi
	return nil
}

// sealer records sealed files in the manifest, in order.
func (w *Writer) sealer(q <-chan FileInfo) {
	for fi := range q {
		w.manifestMu.Lock()
		failed := w.sealErr != nil
		w.manifestMu.Unlock()
		if !failed {
			if err := w.record(fi); err != nil {
				w.log.Error("could not record a sealed file in the manifest; it is recorded again when the archive is recovered", "file", fi.Name, "err", err)
				w.manifestMu.Lock()
				w.sealErr = err
				w.manifestMu.Unlock()
			}
		}
		w.sealing.Done()
	}
}

// record computes a sealed file's sha256 and adds it to the manifest.
func (w *Writer) record(fi FileInfo) error {
	sum, err := FileSHA256(filepath.Join(w.dir, fi.Name))
	if err != nil {
		return err
	}
	fi.SHA256 = sum
	w.manifestMu.Lock()
	defer w.manifestMu.Unlock()
	m := w.manifest
	m.Files = append(append([]FileInfo(nil), m.Files...), fi)
	if err := writeManifest(w.dir, m); err != nil {
		return err
	}
	w.manifest = m
	w.log.Debug("sealed archived file", "file", fi.Name, "bytes", fi.Size, "transactions", fi.Transactions)
	return nil
}

// create starts file num+1 with the header for fde and the current position.
// Its errors name the file being created, not its temporary name.
func (w *Writer) create(fde []byte) error {
	n := w.num + 1
	name := FileName(n)
	path := filepath.Join(w.dir, name)
	tmp := path + tmpSuffix
	fail := func(f *os.File, err error) error {
		if f != nil {
			f.Close()
		}
		os.Remove(tmp)
		if _, ok := err.(*SyncError); ok {
			return err
		}
		return fmt.Errorf("create %s: %w", path, unwrapPath(err))
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return fail(nil, err)
	}
	created := w.now()
	bw := bufio.NewWriterSize(f, 1<<20)
	bin := binlog.NewWriter(bw, 0, false)
	if err := bin.WriteHeader(fde, w.pos, uint32(created.Unix())); err != nil {
		return fail(f, err)
	}
	if err := bw.Flush(); err != nil {
		return fail(f, err)
	}
	if err := f.Sync(); err != nil {
		return w.failSync(fail(f, &SyncError{Path: path, Err: err}))
	}
	idx, err := os.OpenFile(path+indexSuffix, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return fail(f, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		idx.Close()
		return fail(f, err)
	}
	if err := SyncDir(w.dir); err != nil {
		f.Close()
		idx.Close()
		return w.failSync(&SyncError{Path: w.dir, Err: err})
	}
	w.num, w.f, w.idx, w.bw, w.bin = n, f, idx, bw, bin
	w.fde = append([]byte(nil), fde...)
	w.start, w.records, w.first, w.created = w.pos, 0, 0, created
	w.committed = bin.Offset()
	// Readers waiting for more learn of the new file now (a rotation
	// by age, with no transaction after it, would keep it from them).
	w.markDurable(w.durableLocked())
	w.log.Debug("started archived file", "file", name, "position", w.pos.String())
	return nil
}

func (w *Writer) closeFiles() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.idx != nil {
		w.idx.Close()
		w.idx = nil
	}
}

// Close syncs what is committed, drops an open transaction and releases
// the lock.
func (w *Writer) Close() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if w.f != nil && w.syncErr != nil {
		// Nothing more is written after a failed fsync: the index must
		// not name transactions whose data may be lost.
		err = w.syncErr
	} else if w.f != nil {
		if w.asm.writing() {
			if ferr := w.bw.Flush(); ferr == nil {
				err = w.f.Truncate(int64(w.asm.cur.Start))
			}
			w.asm = assembler{}
		}
		if serr := w.syncHeld(); err == nil {
			err = serr
		}
	}
	w.closeFiles()
	if w.sealq != nil {
		close(w.sealq)
		w.sealing.Wait()
		w.sealq = nil
	}
	if w.lock != nil {
		w.lock.Close()
		w.lock = nil
	}
	return err
}

// FileSHA256 returns the hex sha256 of a file's contents.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// unwrapPath drops the *os.PathError around an errno, for messages that
// name the file themselves.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// DiskFull reports whether err is a write that failed for lack of space
// (ENOSPC or EDQUOT): archiving pauses and resumes once space returns.
func DiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// SealError returns the error that kept a sealed file out of the manifest,
// if any; Reopen clears it.
func (w *Writer) SealError() error {
	w.manifestMu.Lock()
	defer w.manifestMu.Unlock()
	return w.sealErr
}

// Prune removes the sealed files numbered below keepFrom (a file name),
// oldest first, and returns them. It stops at the first file that a reader
// holds (see Hold): files are only ever removed from the start of the
// archive, so a reader's later files stay too. The manifest is rewritten
// before the files are deleted; a crash in between leaves files that the
// next recovery deletes.
func (w *Writer) Prune(keepFrom string) ([]FileInfo, error) {
	limit, ok := fileNumber(keepFrom)
	if !ok {
		return nil, fmt.Errorf("%q is not an archived file name", keepFrom)
	}
	// syncMu first (the writer's lock order: syncMu, mu, manifestMu):
	// recovery (Reopen) rereads the manifest under syncMu, and must not
	// interleave with this rewrite of it.
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.manifestMu.Lock()
	defer w.manifestMu.Unlock()
	m := w.manifest
	var doomed []FileInfo
	var locks removalLocks
	defer locks.release()
	for _, fi := range m.Files {
		n, _ := fileNumber(fi.Name)
		if n >= limit {
			break
		}
		held, err := locks.take(filepath.Join(w.dir, fi.Name))
		if os.IsNotExist(err) && n <= m.EvictedThrough {
			doomed = append(doomed, fi) // only in the store
			continue
		}
		if err != nil {
			return nil, err
		}
		if !held {
			w.log.Info("archived file in use by a reader; it is removed at a later pass", "file", fi.Name)
			break
		}
		doomed = append(doomed, fi)
	}
	if len(doomed) == 0 {
		return nil, nil
	}
	last, _ := fileNumber(doomed[len(doomed)-1].Name)
	m.Files = append([]FileInfo(nil), m.Files[len(doomed):]...)
	m.PrunedThrough = last
	if err := writeManifest(w.dir, m); err != nil {
		return nil, err
	}
	w.manifest = m
	return doomed, removeFiles(w.dir, doomed)
}

// removalLocks are the exclusive locks taken on files about to be removed.
type removalLocks []*os.File

// take takes the exclusive, non-blocking flock that removing an archived
// file needs: held is false when a reader holds the file (a shared lock,
// see Hold), and err is os.ErrNotExist's when the file is gone.
func (l *removalLocks) take(path string) (held bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, err
	}
	*l = append(*l, f)
	return true, nil
}

func (l removalLocks) release() {
	for _, f := range l {
		f.Close()
	}
}

// removeFiles deletes archived files and their indexes, then fsyncs dir.
func removeFiles(dir string, files []FileInfo) error {
	for _, fi := range files {
		p := filepath.Join(dir, fi.Name)
		if err := os.Remove(p + indexSuffix); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return SyncDir(dir)
}

// Generations returns the generations recorded in the manifest, oldest
// first (none for an archive from before generations).
func (w *Writer) Generations() []Generation {
	w.manifestMu.Lock()
	defer w.manifestMu.Unlock()
	return append([]Generation(nil), w.manifest.Generations...)
}

// EvictedCacheAge is how long Evict leaves a local copy of an evicted file
// that a reader fetched back from the store.
const EvictedCacheAge = 10 * time.Minute

// Evict removes the local copies of the sealed files numbered before
// keepFrom, which a store holds (storage.local_keep): unlike Prune, they
// stay in the archive, in the manifest, and Manifest.EvictedThrough records
// that readers must fetch them from the store. A file in use by a reader
// (a shared flock) stops the eviction there, as it stops Prune. It returns
// the files whose copies it removed.
func (w *Writer) Evict(keepFrom string) ([]FileInfo, error) {
	limit, ok := fileNumber(keepFrom)
	if !ok {
		return nil, fmt.Errorf("%q is not an archived file name", keepFrom)
	}
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.manifestMu.Lock()
	defer w.manifestMu.Unlock()
	m := w.manifest
	var doomed []FileInfo
	var locks removalLocks
	defer locks.release()
	last := m.EvictedThrough
	for _, fi := range m.Files {
		n, _ := fileNumber(fi.Name)
		if n >= limit || !fi.Sealed {
			break
		}
		path := filepath.Join(w.dir, fi.Name)
		if st, err := os.Stat(path); err == nil && n <= m.EvictedThrough && time.Since(st.ModTime()) < EvictedCacheAge {
			// Fetched back from the store by a reader that is about
			// to read it: a cache, kept a while.
			continue
		}
		held, err := locks.take(path)
		if os.IsNotExist(err) {
			last = max(last, n)
			continue
		}
		if err != nil {
			return nil, err
		}
		if !held {
			break
		}
		doomed = append(doomed, fi)
		last = max(last, n)
	}
	if last > m.EvictedThrough {
		m.EvictedThrough = last
		if err := writeManifest(w.dir, m); err != nil {
			return nil, err
		}
		w.manifest = m
	}
	if len(doomed) == 0 {
		return nil, nil
	}
	return doomed, removeFiles(w.dir, doomed)
}

package binlogserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlog"
)

// BINLOG_SEND_ANNOTATE_ROWS_EVENT, a COM_BINLOG_DUMP flag.
const dumpSendAnnotate = 0x02

// maxPayload is the largest payload of one protocol packet.
const maxPayload = 1<<24 - 1

var errUntilReached = errors.New("until position reached")

// stream sends the archive to one replica.
type stream struct {
	h        *session
	ctx      context.Context
	c        *archive.Cursor
	w        *bufio.Writer
	seq      uint8
	pkt      []byte
	checksum bool // the replica set @master_binlog_checksum to CRC32
	annotate bool
	hb       time.Duration

	skip     understudy.Position // the replica's connect state
	verified map[uint32]bool     // domains whose connect-state GTID was found
	sent     understudy.Position // the replica's position so far
	until    understudy.Position // @slave_until_gtid
	held     bool                // at the server's stop point: heartbeats only
	offset   int64               // end of the last event read in the current file
	gen      int                 // the archive generation being streamed
	walk     *archive.Walker     // the server's stop point, if any
	// last is the archive's last GTID of each domain read so far: each
	// transaction must follow it (gtid_strict_mode, see send).
	last map[uint32]understudy.GTID

	// Reading transactions (see sendTxn).
	f    *os.File // the cursor's current file, opened by name
	sec  io.SectionReader
	br   *bufio.Reader
	txn  []byte // the events of a transaction, or of one event
	ends []int  // the end of each event in txn
}

// dump answers COM_BINLOG_DUMP: it checks the request, then streams until
// the replica goes away, the server stops or the UNTIL position is reached.
func (h *session) dump(data []byte) error {
	if len(data) < 10 {
		return fatal(KindRequest, "malformed COM_BINLOG_DUMP packet")
	}
	flags := binary.LittleEndian.Uint16(data[4:])
	capability, _ := strconv.Atoi(h.vars["mariadb_slave_capability"])
	state, ok := h.vars["slave_connect_state"]
	if !ok || capability < 4 {
		return fatal(KindRequest, "the understudy binlog server serves GTID replication only: use CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos")
	}
	start, err := understudy.ParsePosition(state)
	if err != nil {
		return fatal(KindRequest, "invalid @slave_connect_state: %v", err)
	}
	var until understudy.Position
	if u := h.vars["slave_until_gtid"]; u != "" {
		if until, err = understudy.ParsePosition(u); err != nil {
			return fatal(KindRequest, "invalid @slave_until_gtid: %v", err)
		}
	}
	src := h.srv.cfg.Source
	a, err := archive.Open(h.srv.cfg.Dir)
	if err != nil {
		return archiveError(src, err)
	}
	first, err := startFile(a, start, src)
	if err != nil {
		return err
	}
	c, err := archive.OpenCursor(h.srv.cfg.Dir, first.Name)
	if err != nil {
		return archiveError(src, err)
	}
	defer c.Close()
	hbNanos, _ := strconv.ParseInt(strings.SplitN(h.vars["master_heartbeat_period"], ".", 2)[0], 10, 64)
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	// The replica sends nothing after COM_BINLOG_DUMP: a read that returns
	// means it went away.
	nc := h.conn.Conn.Conn
	go func() {
		io.Copy(io.Discard, nc)
		cancel()
	}()
	st := &stream{
		h: h, ctx: ctx, c: c, w: bufio.NewWriterSize(nc, 256<<10), seq: h.conn.Sequence,
		checksum: strings.EqualFold(h.vars["master_binlog_checksum"], "CRC32"),
		annotate: flags&dumpSendAnnotate != 0, hb: time.Duration(hbNanos),
		skip: start, sent: start, until: until, verified: map[uint32]bool{}, gen: first.Generation,
		last: map[uint32]understudy.GTID{},
		br:   bufio.NewReaderSize(nil, 256<<10),
	}
	defer func() {
		if st.f != nil {
			st.f.Close()
		}
	}()
	if stop := h.srv.cfg.Stop; !stop.IsZero() {
		st.walk = archive.NewWalker(stop, start)
		st.held = st.walk.Done()
	}
	for _, g := range first.StartPosition.GTIDs() {
		st.last[g.Domain] = g
	}
	for _, g := range start.GTIDs() {
		if s, ok := first.StartPosition.Domain(g.Domain); ok && s == g {
			st.verified[g.Domain] = true
		}
	}
	h.log.Info("replica connected", "replica_server_id", h.replicaID, "gtid_position", start.String(), "until", until.String(), "file", first.Name)
	if m := h.srv.cfg.Metrics; m != nil {
		g := m.Replicas.WithLabelValues(src)
		g.Inc()
		defer g.Dec()
	}
	err = st.run()
	var fe *fatalError
	switch {
	case errors.Is(err, errUntilReached):
		h.log.Info("replica reached its UNTIL position", "gtid_position", st.sent.String())
		return nil
	case errors.As(err, &fe):
		// The stream has started: the error goes in the stream's own
		// packet sequence, where the replica reads it.
		h.srv.fail(h.log, fe)
		return st.writeError(fe.myError())
	}
	return err
}

// writeError sends an ERR packet in the stream and flushes it.
func (st *stream) writeError(me *mysql.MyError) error {
	p := []byte{0xff, byte(me.Code), byte(me.Code >> 8), '#'}
	state := me.State
	if len(state) != 5 {
		state = "HY000"
	}
	p = append(append(p, state...), me.Message...)
	if err := st.writePacket(p); err != nil {
		return err
	}
	return st.w.Flush()
}

// startFile picks the newest archived file whose start position the
// replica's position contains, as MariaDB picks a binlog file by its
// GTID_LIST.
func startFile(a *archive.Archive, start understudy.Position, src string) (archive.FileInfo, error) {
	files := a.Files()
	if len(files) == 0 {
		return archive.FileInfo{}, fmt.Errorf("the archive of source %s is empty", src)
	}
	end := a.Position()
	for _, g := range start.GTIDs() {
		e, ok := end.Domain(g.Domain)
		if !ok {
			continue // a domain of another primary: not ours to check
		}
		if g.Seq > e.Seq {
			return archive.FileInfo{}, fatal(KindPosition, "the replica's GTID %s is beyond the archive of source %s, which ends at %s in domain %d: the replica has transactions the archive never saw", g, src, e, g.Domain)
		}
		if g.Seq == e.Seq && g != e {
			return archive.FileInfo{}, fatal(KindPosition, "the replica's GTID %s is not in the archive of source %s, which has %s at that sequence number", g, src, e)
		}
	}
	for i := len(files) - 1; i >= 0; i-- {
		if start.ContainsPosition(files[i].StartPosition) {
			return files[i], nil
		}
	}
	return archive.FileInfo{}, fatal(KindPosition, "the replica's GTID position %q is older than the archive of source %s, which starts at %q: those transactions are not archived", start.String(), src, files[0].StartPosition.String())
}

func (st *stream) run() error {
	if err := st.sendRotate(st.c.Name(), true, st.checksum); err != nil {
		return err
	}
	if err := st.sendFileStart(); err != nil {
		return err
	}
	if !st.until.IsZero() && st.sent.ContainsPosition(st.until) {
		return st.untilReached()
	}
	var lastSend time.Time
	for {
		if st.ctx.Err() != nil {
			return st.ctx.Err()
		}
		var notify <-chan struct{}
		if st.h.srv.cfg.Notify != nil {
			notify = st.h.srv.cfg.Notify()
		}
		if !st.held {
			rec, ok, err := st.c.Next()
			if err != nil {
				return archiveError(st.h.srv.cfg.Source, err)
			}
			if ok {
				if err := st.send(rec); err != nil {
					return err
				}
				lastSend = time.Now()
				continue
			}
			// The ROTATE that ends a file is the file's last event: it
			// has the file's checksum setting, not the next one's.
			ending := st.c.Checksum()
			moved, err := st.c.Advance()
			if err != nil {
				return archiveError(st.h.srv.cfg.Source, err)
			}
			if moved {
				// A new generation after a gap: the replica cannot go on
				// without the purged transactions.
				gen, err := archive.GenerationOf(st.h.srv.cfg.Dir, st.c.Name())
				if err != nil {
					return archiveError(st.h.srv.cfg.Source, err)
				}
				if gen != st.gen {
					return fatal(KindGap, "the archive of source %s has a gap after %q: the primary purged transactions before they were archived, and the next archived file (%s) begins at %q. Rebuild this replica from a snapshot taken after the gap", st.h.srv.cfg.Source, st.sent.String(), st.c.Name(), st.c.Start().String())
				}
				if err := st.sendRotate(st.c.Name(), false, ending); err != nil {
					return err
				}
				if err := st.sendFileStart(); err != nil {
					return err
				}
				continue
			}
		}
		// Idle: flush, then wait for new transactions, sending heartbeats.
		if err := st.w.Flush(); err != nil {
			return err
		}
		if err := st.wait(notify, &lastSend); err != nil {
			return err
		}
	}
}

func (st *stream) wait(notify <-chan struct{}, lastSend *time.Time) error {
	var poll <-chan time.Time
	if notify == nil || st.held {
		poll = time.After(st.h.srv.cfg.Poll)
	}
	var hb <-chan time.Time
	if st.hb > 0 {
		d := st.hb - time.Since(*lastSend)
		hb = time.After(max(d, 0))
	}
	select {
	case <-st.ctx.Done():
		return st.ctx.Err()
	case <-notify:
	case <-poll:
	case <-hb:
		*lastSend = time.Now()
		if err := st.sendHeartbeat(); err != nil {
			return err
		}
		return st.w.Flush()
	}
	return nil
}

// send streams one archived transaction, unless the replica has it, or a
// stop point says otherwise.
func (st *stream) send(rec archive.Record) error {
	g := rec.GTID
	// The archive holds each domain's transactions in increasing order
	// (the binlog server answers gtid_strict_mode=ON): one that does not
	// follow is never sent.
	if prev, ok := st.last[g.Domain]; ok && g.Seq <= prev.Seq {
		return fatal(KindCorrupt, "the archive of source %s is damaged: %s at offset %d (transaction %s): it does not follow %s, the previous transaction of domain %d (GTIDs increase in each domain); run understudy verify",
			st.h.srv.cfg.Source, st.c.Name(), rec.Start, g, prev, g.Domain)
	}
	st.last[g.Domain] = g
	if s, ok := st.skip.Domain(g.Domain); ok && !st.verified[g.Domain] {
		switch {
		case g == s:
			st.verified[g.Domain] = true
		case g.Seq >= s.Seq:
			return fatal(KindPosition, "the replica's GTID %s is not in the archive of source %s: in domain %d the archive has %s where it should be", s, st.h.srv.cfg.Source, g.Domain, g)
		}
	}
	if st.skip.Contains(g) {
		st.offset = int64(rec.End)
		return nil
	}
	if st.walk != nil {
		switch st.walk.Next(g, rec.Time) {
		case archive.Stop:
			st.held = true
			st.h.log.Info("replica held at the stop point", "stop", st.h.srv.cfg.Stop.String(), "gtid_position", st.sent.String())
			return nil
		case archive.Skip: // another domain beyond an --until-gtid point
			st.offset = int64(rec.End)
			return nil
		}
		if st.walk.Done() {
			defer func() {
				st.held = true
				st.h.log.Info("replica reached the stop point", "stop", st.h.srv.cfg.Stop.String(), "gtid_position", st.sent.String())
			}()
		}
	}
	if !st.until.IsZero() && !st.until.Contains(g) {
		st.offset = int64(rec.End)
		return nil
	}
	if err := st.sendTxn(rec); err != nil {
		return err
	}
	st.offset = int64(rec.End)
	st.sent = st.sent.With(g)
	if !st.until.IsZero() && st.sent.ContainsPosition(st.until) {
		return st.untilReached()
	}
	return nil
}

// maxBuffered is the size up to which a transaction is read once, into
// memory, checked and then sent. A larger one is read twice: checked, then
// sent. Either way a damaged transaction is never sent in part. 8 MiB holds
// the bulk loads' transactions (a sysbench prepare's are 3.5 MiB) and
// keeps a replica's stream well inside the 64 MiB a server may use.
const maxBuffered = 8 << 20

// sendTxn sends the events of rec once they are all checked (see readTxn).
func (st *stream) sendTxn(rec archive.Record) error {
	if rec.End-rec.Start > maxBuffered {
		if err := st.readTxn(rec, false, nil); err != nil {
			return err
		}
		return st.readTxn(rec, false, st.sendEvent)
	}
	if err := st.readTxn(rec, true, nil); err != nil {
		return err
	}
	prev := 0
	for _, end := range st.ends {
		if err := st.sendEvent(st.txn[prev:end]); err != nil {
			return err
		}
		prev = end
	}
	return nil
}

func (st *stream) sendEvent(ev []byte) error {
	if !st.annotate && ev[4] == binlog.AnnotateRowsEvent {
		return nil
	}
	ev, err := st.filterQuery(ev)
	if err != nil {
		return err
	}
	return st.writeEvent(ev)
}

// readTxn reads the events of rec from the archived file and checks each
// one: it lies inside the transaction, its CRC32 matches, and the first is
// the GTID event of rec. With buffered, the events are kept in st.txn (ends
// in st.ends); otherwise each is passed to fn, if set. Any failure is an
// ERR 1236 naming the file, the offset and the transaction.
func (st *stream) readTxn(rec archive.Record, buffered bool, fn func([]byte) error) error {
	name := st.c.Name()
	if st.f == nil || st.f.Name() != filepath.Join(st.h.srv.cfg.Dir, name) {
		if st.f != nil {
			st.f.Close()
			st.f = nil
		}
		f, err := os.Open(filepath.Join(st.h.srv.cfg.Dir, name))
		if err != nil {
			return archiveError(st.h.srv.cfg.Source, err)
		}
		st.f = f
	}
	start, end := int64(rec.Start), int64(rec.End)
	if end <= start {
		return st.damaged(rec, start, fmt.Sprintf("the index gives the transaction no bytes (it ends at offset %d)", end))
	}
	st.sec = *io.NewSectionReader(st.f, start, end-start)
	st.br.Reset(&st.sec)
	st.txn, st.ends = st.txn[:0], st.ends[:0]
	for off := start; off < end; {
		if end-off < binlog.HeaderSize {
			return st.damaged(rec, off, fmt.Sprintf("%d bytes are left before the transaction's end at offset %d, too few for an event", end-off, end))
		}
		b := st.txn
		if !buffered {
			b = b[:0]
		}
		i := len(b)
		b = slices.Grow(b, binlog.HeaderSize)[:i+binlog.HeaderSize]
		if _, err := io.ReadFull(st.br, b[i:]); err != nil {
			return st.readError(rec, off, err)
		}
		h, err := binlog.ParseHeader(b[i:])
		if err != nil {
			return st.damaged(rec, off, err.Error())
		}
		if off+int64(h.Size) > end {
			return st.damaged(rec, off, fmt.Sprintf("the event's length of %d bytes runs past the transaction's end at offset %d", h.Size, end))
		}
		n := i + int(h.Size)
		b = slices.Grow(b, n-len(b))[:n]
		st.txn = b
		if _, err := io.ReadFull(st.br, b[i+binlog.HeaderSize:]); err != nil {
			return st.readError(rec, off, err)
		}
		ev := b[i:n]
		if st.c.Checksum() {
			if err := binlog.VerifyChecksum(ev); err != nil {
				return st.damaged(rec, off, "event checksum mismatch")
			}
		}
		if off == start {
			gi, err := binlog.ParseGTIDEvent(ev, st.c.Checksum())
			if err != nil {
				return st.damaged(rec, off, "the transaction does not begin with a GTID event: "+err.Error())
			}
			if gi.GTID != rec.GTID {
				return st.damaged(rec, off, fmt.Sprintf("the GTID event says %s, the index %s", gi.GTID, rec.GTID))
			}
		}
		off += int64(h.Size)
		if buffered {
			st.ends = append(st.ends, n)
		} else if fn != nil {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// damaged is the error for a damaged transaction.
func (st *stream) damaged(rec archive.Record, off int64, reason string) error {
	return fatal(KindCorrupt, "the archive of source %s is damaged: %s at offset %d (transaction %s): %s; run understudy verify",
		st.h.srv.cfg.Source, st.c.Name(), off, rec.GTID, reason)
}

// readError is the error for a failed read inside rec: a file that ends
// inside it is damaged; anything else is an I/O error.
func (st *stream) readError(rec archive.Record, off int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		reason := "short read: the file ends inside the transaction"
		if fi, serr := st.f.Stat(); serr == nil {
			reason = fmt.Sprintf("short read: the file ends at offset %d, inside the transaction (which ends at offset %d)", fi.Size(), rec.End)
		}
		return st.damaged(rec, off, reason)
	}
	return fatal(KindRead, "the archive of source %s cannot be read: %s at offset %d (transaction %s): %v",
		st.h.srv.cfg.Source, st.c.Name(), off, rec.GTID, err)
}

// archiveError is the error for a failure of the archive's reader: a
// damaged archive (understudy.ErrCorrupt) or an I/O error.
func archiveError(src string, err error) error {
	var fe *fatalError
	if errors.As(err, &fe) {
		return err
	}
	if errors.Is(err, understudy.ErrCorrupt) {
		return fatal(KindCorrupt, "the archive of source %s is damaged: %v; run understudy verify", src, err)
	}
	return fatal(KindRead, "the archive of source %s cannot be read: %v", src, err)
}

// sendFileStart sends the current file's format description.
func (st *stream) sendFileStart() error {
	st.offset = st.c.DataStart()
	return st.writeEvent(st.c.FormatDescription())
}

// sendRotate sends a ROTATE to name: artificial (log_pos 0) at the start of
// a stream, or a real one ending the previous file. checksum: whether it
// carries a CRC32 (the replica's @master_binlog_checksum for the
// artificial one, else the setting of the file it ends).
func (st *stream) sendRotate(name string, artificial, checksum bool) error {
	body := make([]byte, 8+len(name))
	binary.LittleEndian.PutUint64(body, 4)
	copy(body[8:], name)
	h := binlog.Header{Type: binlog.RotateEvent, ServerID: st.h.srv.cfg.ServerID}
	if artificial {
		h.Flags = binlog.FlagArtificial
	} else {
		size := binlog.HeaderSize + len(body)
		if checksum {
			size += binlog.ChecksumSize
		}
		h.LogPos = uint32(st.offset) + uint32(size)
	}
	return st.writeEvent(binlog.NewEvent(h, body, checksum))
}

// sendHeartbeat tells an idle replica that the stream is alive and where
// it stands: the current file and offset.
func (st *stream) sendHeartbeat() error {
	h := binlog.Header{Type: binlog.HeartbeatEvent, ServerID: st.h.srv.cfg.ServerID, LogPos: uint32(st.offset), Flags: binlog.FlagArtificial}
	return st.writeEvent(binlog.NewEvent(h, []byte(st.c.Name()), st.c.Checksum()))
}

// untilReached ends the stream at @slave_until_gtid: a GTID_LIST flagged
// UNTIL_REACHED, then EOF.
func (st *stream) untilReached() error {
	h := binlog.Header{Type: binlog.GTIDListEvent, ServerID: st.h.srv.cfg.ServerID, LogPos: uint32(st.offset), Flags: binlog.FlagArtificial}
	if err := st.writeEvent(binlog.NewEvent(h, binlog.GTIDListBody(st.sent, binlog.GTIDListFlagUntilReached), st.c.Checksum())); err != nil {
		return err
	}
	if err := st.writePacket([]byte{0xfe, 0, 0, 0, 0}); err != nil {
		return err
	}
	if err := st.w.Flush(); err != nil {
		return err
	}
	return errUntilReached
}

// writeEvent sends one event as an OK-prefixed packet: straight into the
// write buffer when it fits one protocol packet, with no copy of its own.
func (st *stream) writeEvent(ev []byte) error {
	n := len(ev) + 1
	if n >= maxPayload {
		st.pkt = append(append(st.pkt[:0], 0x00), ev...)
		err := st.writePacket(st.pkt)
		st.pkt = nil // an event this size is not kept
		return err
	}
	hdr := [5]byte{byte(n), byte(n >> 8), byte(n >> 16), st.seq, 0x00}
	st.seq++
	if _, err := st.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := st.w.Write(ev)
	return err
}

// writePacket frames a payload into protocol packets of at most 16 MiB.
func (st *stream) writePacket(p []byte) error {
	var hdr [4]byte
	for {
		n := min(len(p), maxPayload)
		hdr[0], hdr[1], hdr[2], hdr[3] = byte(n), byte(n>>8), byte(n>>16), st.seq
		st.seq++
		if _, err := st.w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := st.w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if n < maxPayload {
			return nil
		}
	}
}

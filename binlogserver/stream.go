package binlogserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
}

// dump answers COM_BINLOG_DUMP: it checks the request, then streams until
// the replica goes away, the server stops or the UNTIL position is reached.
func (h *session) dump(data []byte) error {
	if len(data) < 10 {
		return gtidError("malformed COM_BINLOG_DUMP packet")
	}
	flags := binary.LittleEndian.Uint16(data[4:])
	capability, _ := strconv.Atoi(h.vars["mariadb_slave_capability"])
	state, ok := h.vars["slave_connect_state"]
	if !ok || capability < 4 {
		return gtidError("the understudy binlog server serves GTID replication only: use CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos")
	}
	start, err := understudy.ParsePosition(state)
	if err != nil {
		return gtidError("invalid @slave_connect_state: %v", err)
	}
	var until understudy.Position
	if u := h.vars["slave_until_gtid"]; u != "" {
		if until, err = understudy.ParsePosition(u); err != nil {
			return gtidError("invalid @slave_until_gtid: %v", err)
		}
	}
	src := h.srv.cfg.Source
	a, err := archive.Open(h.srv.cfg.Dir)
	if err != nil {
		return gtidError("the archive of source %s cannot be read: %v", src, err)
	}
	first, err := startFile(a, start, src)
	if err != nil {
		return err
	}
	c, err := archive.OpenCursor(h.srv.cfg.Dir, first.Name)
	if err != nil {
		return gtidError("the archive of source %s cannot be read: %v", src, err)
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
	}
	if stop := h.srv.cfg.Stop; !stop.IsZero() {
		st.walk = archive.NewWalker(stop, start)
		st.held = st.walk.Done()
	}
	for _, g := range start.GTIDs() {
		if s, ok := first.StartPosition.Domain(g.Domain); ok && s == g {
			st.verified[g.Domain] = true
		}
	}
	h.log.Info("replica connected", "replica_server_id", h.replicaID, "gtid_position", start.String(), "until", until.String(), "file", first.Name)
	err = st.run()
	var me *mysql.MyError
	switch {
	case errors.Is(err, errUntilReached):
		h.log.Info("replica reached its UNTIL position", "gtid_position", st.sent.String())
		return nil
	case errors.As(err, &me):
		// The stream has started: the error goes in the stream's own
		// packet sequence, where the replica reads it.
		h.log.Warn("stopped a replica's stream", "err", me.Message)
		return st.writeError(me)
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
			return archive.FileInfo{}, gtidError("the replica's GTID %s is beyond the archive of source %s, which ends at %s in domain %d: the replica has transactions the archive never saw", g, src, e, g.Domain)
		}
		if g.Seq == e.Seq && g != e {
			return archive.FileInfo{}, gtidError("the replica's GTID %s is not in the archive of source %s, which has %s at that sequence number", g, src, e)
		}
	}
	for i := len(files) - 1; i >= 0; i-- {
		if start.ContainsPosition(files[i].StartPosition) {
			return files[i], nil
		}
	}
	return archive.FileInfo{}, gtidError("the replica's GTID position %q is older than the archive of source %s, which starts at %q: those transactions are not archived", start.String(), src, files[0].StartPosition.String())
}

func (st *stream) run() error {
	if err := st.sendRotate(st.c.Name(), true); err != nil {
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
				return err
			}
			if ok {
				if err := st.send(rec); err != nil {
					return err
				}
				lastSend = time.Now()
				continue
			}
			moved, err := st.c.Advance()
			if err != nil {
				return err
			}
			if moved {
				// A new generation after a gap: the replica cannot go on
				// without the purged transactions.
				gen, err := archive.GenerationOf(st.h.srv.cfg.Dir, st.c.Name())
				if err != nil {
					return gtidError("the archive of source %s cannot be read: %v", st.h.srv.cfg.Source, err)
				}
				if gen != st.gen {
					return gtidError("the archive of source %s has a gap after %q: the primary purged transactions before they were archived, and the next archived file (%s) begins at %q. Rebuild this replica from a snapshot taken after the gap", st.h.srv.cfg.Source, st.sent.String(), st.c.Name(), st.c.Start().String())
				}
				if err := st.sendRotate(st.c.Name(), false); err != nil {
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
	if s, ok := st.skip.Domain(g.Domain); ok && !st.verified[g.Domain] {
		switch {
		case g == s:
			st.verified[g.Domain] = true
		case g.Seq >= s.Seq:
			return gtidError("the replica's GTID %s is not in the archive of source %s: in domain %d the archive has %s where it should be", s, st.h.srv.cfg.Source, g.Domain, g)
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
	r := st.c.Events(rec)
	for r.Offset() < int64(rec.End) {
		ev, err := r.Next()
		if err != nil {
			return fmt.Errorf("reading %s at offset %d: %w", st.c.Name(), r.Offset(), err)
		}
		if !st.annotate && ev[4] == binlog.AnnotateRowsEvent {
			continue
		}
		if err := st.writeEvent(ev); err != nil {
			return err
		}
	}
	st.offset = int64(rec.End)
	st.sent = st.sent.With(g)
	if !st.until.IsZero() && st.sent.ContainsPosition(st.until) {
		return st.untilReached()
	}
	return nil
}

// sendFileStart sends the current file's format description.
func (st *stream) sendFileStart() error {
	st.offset = st.c.DataStart()
	return st.writeEvent(st.c.FormatDescription())
}

// sendRotate sends a ROTATE to name: artificial (log_pos 0) at the start of
// a stream, or a real one ending the previous file.
func (st *stream) sendRotate(name string, artificial bool) error {
	body := make([]byte, 8+len(name))
	binary.LittleEndian.PutUint64(body, 4)
	copy(body[8:], name)
	h := binlog.Header{Type: binlog.RotateEvent, ServerID: st.h.srv.cfg.ServerID}
	checksum := st.checksum
	if artificial {
		h.Flags = binlog.FlagArtificial
	} else {
		checksum = st.c.Checksum()
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

// writeEvent sends one event as an OK-prefixed packet.
func (st *stream) writeEvent(ev []byte) error {
	st.pkt = append(append(st.pkt[:0], 0x00), ev...)
	return st.writePacket(st.pkt)
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

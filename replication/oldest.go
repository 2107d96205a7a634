package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	gmrepl "github.com/go-mysql-org/go-mysql/replication"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// Oldest is the oldest point a primary can still stream from.
type Oldest struct {
	// File is the primary's oldest binlog file.
	File string
	// Position is the GTID position before that file's first transaction
	// (its GTID_LIST): streaming from it needs no purged binlog.
	Position understudy.Position
}

var errGotOldest = errors.New("oldest position read")

// OldestPosition asks the primary for its oldest binlog and the GTID
// position that begins it. It needs only the REPLICATION SLAVE privilege:
// a COM_BINLOG_DUMP with an empty file name starts at the primary's first
// binlog, which begins with a format description and a GTID_LIST holding
// the position before it.
func OldestPosition(ctx context.Context, src understudy.Source, log *slog.Logger) (Oldest, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &watchConn{Conn: c, timeout: handshakeTimeout}, nil
	}
	var out Oldest
	var checksum, got bool
	var perr error
	h := eventFunc(func(ev []byte) error {
		if len(ev) < binlog.HeaderSize {
			return nil
		}
		switch ev[4] {
		case binlog.RotateEvent:
			if out.File == "" {
				if name, _, err := binlog.ParseRotate(ev, false); err == nil {
					out.File = name
				}
			}
		case binlog.FormatDescriptionEvent:
			fd, err := binlog.ParseFormatDescription(ev)
			if err != nil {
				perr = err
				return errGotOldest
			}
			checksum = fd.ChecksumAlg == binlog.ChecksumCRC32
		case binlog.GTIDListEvent:
			out.Position, perr = binlog.ParseGTIDList(ev, checksum)
			got = true
			return errGotOldest
		case binlog.GTIDEvent, binlog.QueryEvent, binlog.XIDEvent:
			// A binlog without a GTID_LIST (never on MariaDB 10+): the
			// stream starts at the beginning of history.
			got = true
			return errGotOldest
		}
		return nil
	})
	// The probe never registers as a semi-sync replica, whatever the
	// source says: it acknowledges nothing, and a semi-sync dump that ends
	// within moments of starting can hang the primary. MariaDB's ACK
	// receiver (10.11 at least) can miss that a semi-sync replica came and
	// went while it was not scheduled: the ended dump thread then waits
	// forever in Ack_receiver::remove_slave ("Killed", "Waiting to finalize
	// termination"), and every later dump with the same server_id waits
	// for it in kill_zombie_dump_threads, so the stream that follows the
	// probe would never get an event.
	probe := src
	probe.SemiSync = false
	syncer := newSyncer(probe, time.Second, dial, log, h)
	defer syncer.Close()
	streamer, err := syncer.StartSync(mysql.Position{Name: "", Pos: 4})
	if err != nil {
		return out, classify(src, err)
	}
	_, err = streamer.GetEvent(ctx)
	if perr != nil {
		return out, fmt.Errorf("reading the oldest binlog of %s: %w", src.Addr(), perr)
	}
	if got {
		return out, nil
	}
	if ctx.Err() != nil {
		return out, &understudy.Error{Op: "read the oldest binlog of " + src.Addr(), Err: errors.New("no GTID_LIST within 30s")}
	}
	return out, classify(src, err)
}

type eventFunc func(ev []byte) error

func (f eventFunc) HandleEvent(e *gmrepl.BinlogEvent) error { return f(e.RawData) }

package archive

import (
	"fmt"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// Kind says what an event is to the archive: what Writer.Write did with
// it, and how recovery counts it.
type Kind uint8

const (
	// Appended: an event of the open transaction (its GTID event
	// included), written.
	Appended Kind = iota
	// Committed: the event that completes a transaction, written; the
	// transaction is Result.Record, durable after the next Sync.
	Committed
	// Alone: an event outside any transaction (an INCIDENT, say), written
	// as a unit of its own.
	Alone
	// Skipped: an event of a transaction that the archive already holds
	// (its GTID is contained in the archive's position), not written.
	Skipped
	// Format: the primary's format description. The archive writes its own
	// copy at the start of each file, and starts a new file when it
	// changes.
	Format
	// Heartbeat: the primary is idle. Nothing is written.
	Heartbeat
	// Rotate: the primary moves to another binlog file (Result.Binlog).
	// Nothing is written.
	Rotate
	// Meta: another event about the primary's own files (GTID list, binlog
	// checkpoint, stop, start encryption). Nothing is written.
	Meta
)

var kindNames = [...]string{"appended", "committed", "alone", "skipped", "format", "heartbeat", "rotate", "meta"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind %d", k)
}

// written reports whether events of this kind are archived.
func (k Kind) written() bool { return k <= Alone }

// assembler cuts a sequence of binlog events into the units the archive
// holds: whole transactions, and events that stand alone. It is the one
// place that applies MariaDB's grouping rules (binlog.Grouper) for the
// archive, holds the checksum setting the events are read with (from the
// last format description), the open transaction's GTID and offsets, and
// the skipping of a transaction already archived. The live stream
// (Writer.Write) and recovery and index rebuilds (scanRange) both feed it
// events in file order, so that they agree on where each transaction
// begins and ends.
type assembler struct {
	checksum bool
	g        binlog.Grouper
	// cur is the open transaction (Start, GTID), and once it is
	// Committed, the whole one.
	cur  Record
	skip bool // the open transaction is already archived
}

// writing reports whether a transaction is open and being written.
func (a *assembler) writing() bool { return a.g.InGroup() && !a.skip }

// next classifies ev, which begins at offset off of the file (for a written
// event). held is the archive's position: a transaction it contains is
// Skipped (nil: nothing is skipped). An error means the event cannot follow
// the ones before it (or is malformed).
func (a *assembler) next(ev []byte, off int64, held *understudy.Position) (Kind, error) {
	step, err := a.g.Next(ev, a.checksum)
	if err != nil {
		return 0, err
	}
	switch step {
	case binlog.Begin:
		gi, err := binlog.ParseGTIDEvent(ev, a.checksum)
		if err != nil {
			a.g.Reset()
			return 0, err
		}
		a.cur = Record{Start: uint32(off), GTID: gi.GTID}
		a.skip = held != nil && held.Contains(gi.GTID)
		if a.skip {
			return Skipped, nil
		}
		return Appended, nil
	case binlog.Inside:
		if a.skip {
			return Skipped, nil
		}
		return Appended, nil
	case binlog.End:
		if a.skip {
			a.skip = false
			return Skipped, nil
		}
		a.cur.End = uint32(off + int64(len(ev)))
		a.cur.Time = binlogTimestamp(ev)
		return Committed, nil
	case binlog.Single:
		return Alone, nil
	}
	switch ev[4] {
	case binlog.FormatDescriptionEvent:
		fd, err := binlog.ParseFormatDescription(ev)
		if err != nil {
			return 0, err
		}
		if fd.ChecksumAlg == binlog.ChecksumCRC32 {
			if err := binlog.VerifyChecksum(ev); err != nil {
				return 0, fmt.Errorf("format description: %w", err)
			}
		}
		a.checksum = fd.ChecksumAlg == binlog.ChecksumCRC32
		return Format, nil
	case binlog.HeartbeatEvent:
		return Heartbeat, nil
	case binlog.RotateEvent:
		return Rotate, nil
	}
	return Meta, nil
}

// rotateName is the binlog file a ROTATE event names. The artificial
// ROTATE that begins a stream has no CRC32.
func (a *assembler) rotateName(ev []byte) string {
	name, _, err := binlog.ParseRotate(ev, a.checksum && ev[17]&binlog.FlagArtificial == 0)
	if err != nil {
		return ""
	}
	return name
}

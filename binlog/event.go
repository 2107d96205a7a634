// Package binlog reads and writes MariaDB binlog events and files: the event
// header, CRC32 checksums, the few event bodies understudy needs to look into
// (format description, GTID, GTID list, query, rotate) and the transaction
// grouping rules of a MariaDB replica. It never decodes row images.
//
// The formats are described in docs/archive-format.md.
package binlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Magic is the 4-byte header of every binlog file.
var Magic = []byte{0xfe, 'b', 'i', 'n'}

// HeaderSize is the size of the v4 event header.
const HeaderSize = 19

// ChecksumSize is the size of the CRC32 that ends an event when the format
// description says so.
const ChecksumSize = 4

// Event types understudy looks at. The values are MariaDB's.
const (
	QueryEvent             = 2
	StopEvent              = 3
	RotateEvent            = 4
	IntvarEvent            = 5
	RandEvent              = 13
	UserVarEvent           = 14
	FormatDescriptionEvent = 15
	XIDEvent               = 16
	TableMapEvent          = 19
	WriteRowsEventV1       = 23
	UpdateRowsEventV1      = 24
	DeleteRowsEventV1      = 25
	IncidentEvent          = 26
	HeartbeatEvent         = 27
	XAPrepareEvent         = 38
	AnnotateRowsEvent      = 160
	BinlogCheckpointEvent  = 161
	GTIDEvent              = 162
	GTIDListEvent          = 163
	StartEncryptionEvent   = 164
	QueryCompressedEvent   = 165
	WriteRowsCompressedV1  = 169
	UpdateRowsCompressedV1 = 170
	DeleteRowsCompressedV1 = 171
)

// Event header flags.
const (
	FlagBinlogInUse = 0x0001
	FlagArtificial  = 0x0020
)

// Checksum algorithms of the format description event.
const (
	ChecksumOff   = 0
	ChecksumCRC32 = 1
)

// ErrChecksum means an event's CRC32 does not match its bytes.
var ErrChecksum = errors.New("binlog event checksum mismatch")

// Header is the 19-byte header of a v4 binlog event.
type Header struct {
	Timestamp uint32
	Type      byte
	ServerID  uint32
	Size      uint32
	LogPos    uint32
	Flags     uint16
}

// ParseHeader decodes an event header.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("binlog event header: %d bytes, want %d", len(b), HeaderSize)
	}
	h := Header{
		Timestamp: binary.LittleEndian.Uint32(b[0:]),
		Type:      b[4],
		ServerID:  binary.LittleEndian.Uint32(b[5:]),
		Size:      binary.LittleEndian.Uint32(b[9:]),
		LogPos:    binary.LittleEndian.Uint32(b[13:]),
		Flags:     binary.LittleEndian.Uint16(b[17:]),
	}
	if h.Size < HeaderSize {
		return Header{}, fmt.Errorf("binlog event header: size %d is smaller than the header", h.Size)
	}
	return h, nil
}

// Put encodes h into b[:HeaderSize].
func (h Header) Put(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], h.Timestamp)
	b[4] = h.Type
	binary.LittleEndian.PutUint32(b[5:], h.ServerID)
	binary.LittleEndian.PutUint32(b[9:], h.Size)
	binary.LittleEndian.PutUint32(b[13:], h.LogPos)
	binary.LittleEndian.PutUint16(b[17:], h.Flags)
}

// VerifyChecksum checks the trailing CRC32 of a whole event.
func VerifyChecksum(ev []byte) error {
	if len(ev) < HeaderSize+ChecksumSize {
		return fmt.Errorf("binlog event of %d bytes is too short for a checksum", len(ev))
	}
	n := len(ev) - ChecksumSize
	want := binary.LittleEndian.Uint32(ev[n:])
	if crc32.ChecksumIEEE(ev[:n]) == want {
		return nil
	}
	// MariaDB computes a format description's CRC with LOG_EVENT_BINLOG_IN_USE_F
	// clear and sets the flag in place in the active file.
	if ev[4] == FormatDescriptionEvent && binary.LittleEndian.Uint16(ev[17:])&FlagBinlogInUse != 0 {
		var flags [2]byte
		binary.LittleEndian.PutUint16(flags[:], binary.LittleEndian.Uint16(ev[17:])&^FlagBinlogInUse)
		c := crc32.Update(crc32.ChecksumIEEE(ev[:17]), crc32.IEEETable, flags[:])
		if crc32.Update(c, crc32.IEEETable, ev[19:n]) == want {
			return nil
		}
	}
	return ErrChecksum
}

// Body returns the event body without header and, if checksummed, without
// the CRC32.
func Body(ev []byte, checksum bool) []byte {
	end := len(ev)
	if checksum {
		end -= ChecksumSize
	}
	if end < HeaderSize {
		return nil
	}
	return ev[HeaderSize:end]
}

// TypeName returns a readable name for an event type.
func TypeName(t byte) string {
	switch t {
	case QueryEvent:
		return "Query"
	case StopEvent:
		return "Stop"
	case RotateEvent:
		return "Rotate"
	case FormatDescriptionEvent:
		return "Format_desc"
	case XIDEvent:
		return "Xid"
	case TableMapEvent:
		return "Table_map"
	case HeartbeatEvent:
		return "Heartbeat"
	case AnnotateRowsEvent:
		return "Annotate_rows"
	case GTIDEvent:
		return "Gtid"
	case GTIDListEvent:
		return "Gtid_list"
	case BinlogCheckpointEvent:
		return "Binlog_checkpoint"
	}
	return fmt.Sprintf("type %d", t)
}

package replication

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	gmrepl "github.com/go-mysql-org/go-mysql/replication"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// dump is a replica's dump connection to a MariaDB primary. go-mysql's
// client logs in (auth plugins, TLS); the replica protocol is spoken here
// as go-mysql's BinlogSyncer speaks it for MariaDB in GTID mode (the same
// session variables, COM_REGISTER_SLAVE and COM_BINLOG_DUMP), but every
// event is read into one reused buffer: BinlogSyncer allocates a new slice
// per event, and the garbage it makes costs a quarter of a catch-up's CPU.
type dump struct {
	src  understudy.Source
	hb   time.Duration
	dial client.Dialer
	log  *slog.Logger

	c    *client.Conn
	id   uint32 // the dump connection's id, which close KILLs
	semi bool   // registered as a semi-sync replica

	buf eventBuf
	ack []byte

	crc  bool   // the last format description's checksum algorithm is CRC32
	file string // the primary's binlog file, from ROTATE events
	pos  uint32 // the position after the last event in file
}

// dumpConnectTimeout bounds the login of the dump connection and of the
// one that KILLs it, as go-mysql's BinlogSyncer does (each read of it is
// bounded by ConnectTimeout too).
const dumpConnectTimeout = 10 * time.Second

// connect logs in to the primary with the dump connection's dialer.
func (d *dump) connect(ctx context.Context) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dumpConnectTimeout)
	defer cancel()
	return client.ConnectWithDialer(ctx, "", d.src.Addr(), d.src.User, d.src.Password, "", d.dial, func(c *client.Conn) error {
		c.SetTLSConfig(d.src.TLS)
		c.SetAttributes(map[string]string{"_client_role": "binary_log_listener"})
		return nil
	})
}

// start connects, registers as a replica and asks for the events after
// gset.
func (d *dump) start(ctx context.Context, gset string) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	d.c = c
	d.id = c.GetConnectionID()
	if c.Compression != mysql.MYSQL_COMPRESS_NONE {
		return errors.New("the dump connection is compressed, which the replica protocol here does not read")
	}
	// Tell the primary that we are checksum-aware (the events keep their
	// CRC32s; NONE only spares the first artificial ROTATE its checksum).
	r, err := c.Execute("SHOW GLOBAL VARIABLES LIKE 'BINLOG_CHECKSUM'")
	if err != nil {
		return err
	}
	if s, _ := r.GetString(0, 1); s != "" {
		if _, err := c.Execute(`SET @master_binlog_checksum='NONE', @source_binlog_checksum='NONE'`); err != nil {
			return err
		}
	}
	// MARIA_SLAVE_CAPABILITY_GTID: we understand GTIDs.
	if _, err := c.Execute("SET @mariadb_slave_capability=4"); err != nil {
		return fmt.Errorf("failed to set @mariadb_slave_capability=4: %w", err)
	}
	if d.hb > 0 {
		if _, err := c.Execute(fmt.Sprintf("SET @master_heartbeat_period = %d, @source_heartbeat_period = %d", d.hb, d.hb)); err != nil {
			return err
		}
	}
	id := newUUID()
	if _, err := c.Execute(fmt.Sprintf("SET @slave_uuid = '%s', @replica_uuid = '%s'", id, id)); err != nil {
		return err
	}
	if err := d.registerSlave(); err != nil {
		return err
	}
	if d.src.SemiSync {
		r, err := c.Execute("SHOW VARIABLES WHERE Variable_name IN ('rpl_semi_sync_master_enabled', 'rpl_semi_sync_source_enabled')")
		if err != nil {
			return err
		}
		if s, _ := r.GetString(0, 1); s != "ON" {
			d.log.Error("source does not support semi synchronous replication, use no semi-sync")
		} else {
			if _, err := c.Execute(`SET @rpl_semi_sync_slave = 1, @rpl_semi_sync_replica = 1;`); err != nil {
				return err
			}
			d.semi = true
		}
	}
	// The start position in GTID form; COM_BINLOG_DUMP's file and
	// position are then ignored. Strict mode, as real replicas with
	// gtid_strict_mode set it.
	if _, err := c.Execute(fmt.Sprintf("SET @slave_connect_state='%s'", gset)); err != nil {
		return fmt.Errorf("failed to set @slave_connect_state='%s': %w", gset, err)
	}
	if _, err := c.Execute("SET @slave_gtid_strict_mode=1"); err != nil {
		return fmt.Errorf("failed to set @slave_gtid_strict_mode=1: %w", err)
	}
	return d.writeBinlogDump()
}

// registerSlave sends COM_REGISTER_SLAVE and reads its OK.
func (d *dump) registerSlave() error {
	const host = "understudy"
	user := d.src.User
	if len(user) > 255 {
		user = user[:255]
	}
	data := make([]byte, 4, 4+1+4+1+len(host)+1+len(user)+1+2+4+4)
	data = append(data, mysql.COM_REGISTER_SLAVE)
	data = binary.LittleEndian.AppendUint32(data, d.src.ServerID)
	data = append(data, byte(len(host)))
	data = append(data, host...)
	data = append(data, byte(len(user)))
	data = append(data, user...)
	data = append(data, 0) // no password
	data = binary.LittleEndian.AppendUint16(data, uint16(d.src.Port))
	data = binary.LittleEndian.AppendUint32(data, 0) // replication rank, not used
	data = binary.LittleEndian.AppendUint32(data, 0) // master id, 0 is OK
	d.c.ResetSequence()
	if err := d.c.WritePacket(data); err != nil {
		return err
	}
	_, err := d.c.ReadOKPacket()
	return err
}

// writeBinlogDump sends COM_BINLOG_DUMP, asking for ANNOTATE_ROWS events.
func (d *dump) writeBinlogDump() error {
	data := make([]byte, 4, 4+1+4+2+4)
	data = append(data, mysql.COM_BINLOG_DUMP)
	data = binary.LittleEndian.AppendUint32(data, 0) // position: ignored
	data = binary.LittleEndian.AppendUint16(data, gmrepl.BINLOG_SEND_ANNOTATE_ROWS_EVENT)
	data = binary.LittleEndian.AppendUint32(data, d.src.ServerID)
	d.c.ResetSequence()
	return d.c.WritePacket(data)
}

// stream reads the events of the dump and passes them to h until an error
// or until stop is set (it then returns nil). started runs before the
// first event is handled.
func (d *dump) stream(h Handler, started func(), stop func() bool) error {
	first := true
	for {
		d.buf.shrink()
		d.buf.reset(d.semi)
		if err := d.c.ReadPacketTo(&d.buf); err != nil {
			if stop() {
				return nil
			}
			return err
		}
		if stop() {
			return nil
		}
		data := d.buf.b
		if len(data) == 0 {
			return errors.New("empty packet in the binlog stream")
		}
		switch data[0] {
		case mysql.OK_HEADER:
		case mysql.ERR_HEADER:
			// The message must not alias the reused buffer.
			return d.c.HandleErrorPacket(bytes.Clone(data))
		case mysql.EOF_HEADER:
			// No more events (BINLOG_DUMP_NON_BLOCK only).
			continue
		default:
			d.log.Error("invalid stream header", slog.Int("header", int(data[0])))
			continue
		}
		ev, needACK, err := d.event(data[1:])
		if err != nil {
			return err
		}
		if first {
			first = false
			started()
		}
		if err := h.HandleEvent(ev); err != nil {
			return err
		}
		if needACK {
			if err := d.replySemiSyncACK(); err != nil {
				return err
			}
		}
	}
}

// event checks one event of the stream (data is the packet without its OK
// byte) as go-mysql's parser does in raw mode: its size, its CRC32 when the
// last format description says so, and ROTATE events for the position a
// semi-sync ACK names.
func (d *dump) event(data []byte) (ev []byte, needACK bool, err error) {
	if d.semi && len(data) >= 2 && data[0] == gmrepl.SemiSyncIndicator {
		needACK = data[1] == 0x01
		data = data[2:]
	}
	h, err := binlog.ParseHeader(data)
	if err != nil {
		return nil, false, err
	}
	if int(h.Size) != len(data) {
		return nil, false, fmt.Errorf("invalid data size %d in %s event, event length %d", len(data), binlog.TypeName(h.Type), h.Size)
	}
	if h.Type == binlog.FormatDescriptionEvent {
		// Version (2), server version (50), create timestamp (4), header
		// length (1), then the post-header lengths, the checksum
		// algorithm and the CRC32. Its own setting covers it too.
		const min = binlog.HeaderSize + 2 + 50 + 4 + 1 + 1 + binlog.ChecksumSize
		if len(data) < min {
			return nil, false, fmt.Errorf("format description event of %d bytes is too short", len(data))
		}
		if hl := data[binlog.HeaderSize+2+50+4]; hl != binlog.HeaderSize {
			return nil, false, fmt.Errorf("invalid event header length %d, must be %d", hl, binlog.HeaderSize)
		}
		d.crc = data[len(data)-binlog.ChecksumSize-1] == binlog.ChecksumCRC32
	}
	if d.crc {
		if err := verifyChecksum(h, data); err != nil {
			return nil, false, err
		}
	}
	if h.LogPos > 0 {
		// Some events, like the format description, have none.
		d.pos = h.LogPos
	}
	if h.Type == binlog.RotateEvent {
		b := data[binlog.HeaderSize:]
		if d.crc {
			b = b[:len(b)-binlog.ChecksumSize]
		}
		if len(b) < 8 {
			return nil, false, errors.New("rotate event too short")
		}
		d.pos = uint32(binary.LittleEndian.Uint64(b))
		if name := b[8:]; string(name) != d.file {
			d.file = string(name)
		}
	}
	return data, needACK, nil
}

// verifyChecksum checks an event's CRC32.
func verifyChecksum(h binlog.Header, ev []byte) error {
	if len(ev) < binlog.HeaderSize+binlog.ChecksumSize {
		return fmt.Errorf("%s event of %d bytes is too short for a checksum", binlog.TypeName(h.Type), len(ev))
	}
	if err := binlog.VerifyChecksum(ev); err != nil {
		return fmt.Errorf("failed checksum for %s event, log pos %d: %w", binlog.TypeName(h.Type), h.LogPos, gmrepl.ErrChecksumMismatch)
	}
	return nil
}

// replySemiSyncACK acknowledges the events up to the current position.
func (d *dump) replySemiSyncACK() error {
	d.c.ResetSequence()
	return d.c.WritePacket(d.ackPacket())
}

// ackPacket is the semi-sync ACK of the current position, after room for
// the packet header.
func (d *dump) ackPacket() []byte {
	data := append(d.ack[:0], 0, 0, 0, 0, gmrepl.SemiSyncIndicator)
	data = binary.LittleEndian.AppendUint64(data, uint64(d.pos))
	data = append(data, d.file...)
	d.ack = data
	return data
}

// kill ends the primary's dump thread from a new connection, as go-mysql
// does when its syncer closes: a KILL from the dump connection itself
// would not end the dump, and a dump thread that lingers holds up the next
// dump of our server_id.
func (d *dump) kill() {
	if d.id == 0 {
		return
	}
	c, err := d.connect(context.Background())
	if err != nil {
		return
	}
	defer c.Close()
	// An error (an unknown thread: the dump ended already) leaves
	// nothing to do.
	c.Execute(fmt.Sprintf("KILL %d", d.id))
}

// close KILLs the dump thread (unless kill is false: the network is known
// to be dead) and closes the dump connection.
func (d *dump) close(kill bool) {
	if kill {
		d.kill()
	}
	if d.c != nil {
		d.c.Close()
	}
}

// maxKeptBuffer is the largest event buffer kept from one event to the
// next: the buffer of a larger event is dropped after it, so that the big
// events of a large transaction do not pin their memory.
const maxKeptBuffer = 4 << 20

// maxSizeHint bounds the allocation an event's header may ask for up
// front: MariaDB's packets (max_allowed_packet) are at most 1 GiB.
const maxSizeHint = 1<<30 + 64

// eventBuf is the io.Writer that the packets of the stream are read into.
// It grows to the size the event's header announces, at once, so that a
// large event is not copied on each doubling.
type eventBuf struct {
	b    []byte
	semi bool
}

func (w *eventBuf) reset(semi bool) {
	w.b = w.b[:0]
	w.semi = semi
}

func (w *eventBuf) Write(p []byte) (int, error) {
	if n := len(w.b) + len(p); n > cap(w.b) {
		w.grow(n, p)
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// grow makes room for n bytes, p being the next bytes to write.
func (w *eventBuf) grow(n int, p []byte) {
	c := max(n, 2*cap(w.b), 64<<10)
	if size, ok := w.eventSize(p); ok && size > c && size <= maxSizeHint {
		c = size
	}
	b := make([]byte, len(w.b), c)
	copy(b, w.b)
	w.b = b
}

// eventSize is the packet size the header of the event being read
// announces: the OK byte, the semi-sync header and the event.
func (w *eventBuf) eventSize(p []byte) (int, bool) {
	var hdr [3 + 13]byte
	have := copy(hdr[:], w.b)
	copy(hdr[have:], p)
	if len(w.b)+len(p) < len(hdr) || hdr[0] != mysql.OK_HEADER {
		return 0, false
	}
	off := 1
	if w.semi && hdr[1] == gmrepl.SemiSyncIndicator {
		off = 3
	}
	return off + int(binary.LittleEndian.Uint32(hdr[off+9:])), true
}

// shrink drops a buffer that a large event grew.
func (w *eventBuf) shrink() {
	if cap(w.b) > maxKeptBuffer {
		w.b = nil
	}
}

// newUUID is a random (version 4) UUID, for @slave_uuid.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

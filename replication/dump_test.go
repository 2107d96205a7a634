package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gmrepl "github.com/go-mysql-org/go-mysql/replication"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// testEvent builds an event of type typ with body, and a CRC32 when crc.
func testEvent(typ byte, logPos uint32, flags uint16, body []byte, crc bool) []byte {
	n := binlog.HeaderSize + len(body)
	if crc {
		n += binlog.ChecksumSize
	}
	ev := make([]byte, binlog.HeaderSize, n)
	binlog.Header{Timestamp: 1, Type: typ, ServerID: 1, Size: uint32(n), LogPos: logPos, Flags: flags}.Put(ev)
	ev = append(ev, body...)
	if crc {
		ev = binary.LittleEndian.AppendUint32(ev, crc32.ChecksumIEEE(ev))
	}
	return ev
}

// testFDE is a format description event with checksum algorithm alg.
func testFDE(alg byte) []byte {
	body := make([]byte, 2+50+4+1)
	binary.LittleEndian.PutUint16(body, 4)
	copy(body[2:], "10.11.0-MariaDB-log")
	body[56] = binlog.HeaderSize
	body = append(body, bytes.Repeat([]byte{8}, 40)...)
	body = append(body, alg)
	return testEvent(binlog.FormatDescriptionEvent, 0, 0, body, true)
}

func rotateBody(name string, pos uint64) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, pos), name...)
}

// TestDumpEvent: the checks go-mysql's parser made of each event: sizes,
// CRC32s after a format description that asks for them, the semi-sync
// header, and the binlog file and position a semi-sync ACK names.
func TestDumpEvent(t *testing.T) {
	d := &dump{semi: true}
	// The artificial ROTATE before any format description: no CRC32.
	ev, ack, err := d.event(testEvent(binlog.RotateEvent, 0, binlog.FlagArtificial, rotateBody("bin.000001", 4), false))
	if err != nil || ack || d.file != "bin.000001" || d.pos != 4 || d.crc {
		t.Fatalf("rotate: ack %v err %v file %q pos %d crc %v", ack, err, d.file, d.pos, d.crc)
	}
	if len(ev) != binlog.HeaderSize+18 {
		t.Fatalf("rotate: %d bytes", len(ev))
	}
	if _, _, err := d.event(testFDE(binlog.ChecksumCRC32)); err != nil || !d.crc {
		t.Fatalf("format description: %v, crc %v", err, d.crc)
	}
	xid := testEvent(binlog.XIDEvent, 1234, 0, make([]byte, 8), true)
	// With the semi-sync header asking for an ACK.
	ev, ack, err = d.event(append([]byte{gmrepl.SemiSyncIndicator, 1}, xid...))
	if err != nil || !ack || !bytes.Equal(ev, xid) || d.pos != 1234 {
		t.Fatalf("xid with semi-sync header: ack %v err %v pos %d", ack, err, d.pos)
	}
	ev, ack, err = d.event(append([]byte{gmrepl.SemiSyncIndicator, 0}, xid...))
	if err != nil || ack || !bytes.Equal(ev, xid) {
		t.Fatalf("xid without ACK request: ack %v err %v", ack, err)
	}
	// A ROTATE to the next file, with its CRC32.
	if _, _, err := d.event(testEvent(binlog.RotateEvent, 0, 0, rotateBody("bin.000002", 4), true)); err != nil || d.file != "bin.000002" || d.pos != 4 {
		t.Fatalf("rotate: err %v file %q pos %d", err, d.file, d.pos)
	}
	if ack := d.ackPacket(); !bytes.Equal(ack, append([]byte{0, 0, 0, 0, 0xef, 4, 0, 0, 0, 0, 0, 0, 0}, "bin.000002"...)) {
		t.Fatalf("ACK packet %x", ack)
	}

	bad := bytes.Clone(xid)
	bad[20] ^= 1
	if _, _, err := d.event(bad); !errors.Is(err, gmrepl.ErrChecksumMismatch) {
		t.Fatalf("corrupt event: %v, want a checksum mismatch", err)
	}
	fde := testFDE(binlog.ChecksumCRC32)
	fde[30] ^= 1
	if _, _, err := d.event(fde); !errors.Is(err, gmrepl.ErrChecksumMismatch) {
		t.Fatalf("corrupt format description: %v, want a checksum mismatch", err)
	}
	if _, _, err := d.event(xid[:len(xid)-1]); err == nil {
		t.Fatal("truncated event accepted")
	}
	if _, _, err := d.event(xid[:10]); err == nil {
		t.Fatal("truncated header accepted")
	}
	// Without checksums, a corrupt CRC32 is just bytes.
	if _, _, err := d.event(testFDE(binlog.ChecksumOff)); err != nil || d.crc {
		t.Fatalf("format description without checksums: %v", err)
	}
	if _, _, err := d.event(bad); err != nil {
		t.Fatalf("event without checksum: %v", err)
	}
}

// TestEventBuf: the buffer grows to the size the event's header announces
// in one step, is reused, and is dropped after a large event.
func TestEventBuf(t *testing.T) {
	var w eventBuf
	write := func(semi bool, pkt []byte) {
		t.Helper()
		w.reset(semi)
		for p := pkt; len(p) > 0; {
			n := min(len(p), 16<<10)
			if _, err := w.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if !bytes.Equal(w.b, pkt) {
			t.Fatal("packet bytes differ")
		}
	}
	small := append([]byte{0}, testEvent(binlog.XIDEvent, 4, 0, make([]byte, 8), true)...)
	write(false, small)
	keep := cap(w.b)
	write(false, small)
	if cap(w.b) != keep {
		t.Fatal("buffer not reused")
	}
	big := append([]byte{0, gmrepl.SemiSyncIndicator, 1}, testEvent(binlog.WriteRowsEventV1, 4, 0, make([]byte, 10<<20), true)...)
	write(true, big)
	if cap(w.b) != len(big) {
		t.Fatalf("buffer of %d bytes for a packet of %d", cap(w.b), len(big))
	}
	w.shrink()
	if w.b != nil {
		t.Fatal("a large event's buffer was kept")
	}
	write(false, small)
	w.shrink()
	if w.b == nil {
		t.Fatal("a small event's buffer was dropped")
	}
}

// TestStreamEvents: Stream hands over the primary's events byte for byte,
// also one larger than a protocol packet (16 MiB), and ends with nil when
// its context does, at once, leaving the primary no dump thread that
// would hold up the next stream of the same server_id.
func TestStreamEvents(t *testing.T) {
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, Args: []string{"--max-allowed-packet=64M"}})
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER repl@'%' IDENTIFIED BY 'pw'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, b LONGBLOB)")
	p.Exec(t, "INSERT INTO app.t VALUES (1, 'x')")
	p.Exec(t, "INSERT INTO app.t VALUES (2, REPEAT('y', 20 << 20))")
	p.Exec(t, "INSERT INTO app.t VALUES (3, 'z')")
	end, err := understudy.ParsePosition(p.GTIDBinlogPos(t))
	if err != nil {
		t.Fatal(err)
	}
	logs := p.BinaryLogs(t)
	file, err := os.ReadFile(filepath.Join(p.DataDir, logs[len(logs)-1]))
	if err != nil {
		t.Fatal(err)
	}
	src := understudy.Source{Name: "db", Host: p.Host, Port: p.Port, User: "repl", Password: "pw", ServerID: 9300, Heartbeat: 100 * time.Millisecond}

	stream := func(stopAt understudy.Position) (events, compared, largest int, took time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var pos understudy.Position
		var stopped time.Time
		h := HandlerFunc(func(ev []byte) error {
			largest = max(largest, len(ev))
			hd, err := binlog.ParseHeader(ev)
			if err != nil {
				return err
			}
			if hd.Type != binlog.HeartbeatEvent {
				// A busy machine may see a heartbeat or two.
				events++
			}
			if hd.Type == binlog.GTIDEvent {
				gi, err := binlog.ParseGTIDEvent(ev, true)
				if err != nil {
					return err
				}
				pos = pos.With(gi.GTID)
			}
			if hd.LogPos != 0 && hd.Flags&binlog.FlagArtificial == 0 && hd.Type != binlog.HeartbeatEvent && hd.Type != binlog.FormatDescriptionEvent {
				if int(hd.LogPos) > len(file) || !bytes.Equal(file[int(hd.LogPos)-len(ev):hd.LogPos], ev) {
					t.Errorf("%s event ending at %d differs from the binlog file", binlog.TypeName(hd.Type), hd.LogPos)
				}
				compared++
			}
			if hd.Type == binlog.XIDEvent && pos.ContainsPosition(stopAt) && stopped.IsZero() {
				stopped = time.Now()
				cancel()
			}
			return nil
		})
		if err := Stream(ctx, src, understudy.Position{}, nil, h); err != nil {
			t.Fatalf("Stream: %v", err)
		}
		if stopped.IsZero() {
			t.Fatalf("Stream ended before the end of the binlog")
		}
		return events, compared, largest, time.Since(stopped)
	}
	events, compared, largest, took := stream(end)
	if largest < 20<<20 {
		t.Errorf("largest event %d bytes, want the 20 MiB row", largest)
	}
	if took > 5*time.Second {
		t.Errorf("Stream returned %s after its context ended", took)
	}
	t.Logf("%d events (and heartbeats), %d compared with the binlog file, largest %d bytes; returned %s after cancel", events, compared, largest, took.Round(time.Millisecond))
	// Again, with the same server_id: the primary ended the first dump.
	again, _, _, _ := stream(end)
	if again != events {
		t.Errorf("second stream: %d events, want %d", again, events)
	}
}

// TestStreamError: an error packet in the stream becomes go-mysql's
// MyError, which classify explains.
func TestStreamError(t *testing.T) {
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1})
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER repl@'%' IDENTIFIED BY 'pw'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
	p.Exec(t, "CREATE DATABASE app")
	src := understudy.Source{Name: "db", Host: p.Host, Port: p.Port, User: "repl", Password: "pw", ServerID: 9301}
	future, err := understudy.ParsePosition("0-1-1000")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = Stream(ctx, src, future, nil, HandlerFunc(func([]byte) error { return nil }))
	var ue *understudy.Error
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "MariaDB error 1236") {
		t.Fatalf("Stream from a future position: %v, want MariaDB error 1236", err)
	}
	t.Logf("stream from a future position: %v", err)
}

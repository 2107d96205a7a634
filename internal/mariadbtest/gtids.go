package mariadbtest

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// BinlogGTIDs lists the GTIDs in the server's binlog files that it still
// holds (not purged), in order.
func (s *Server) BinlogGTIDs(tb testing.TB) []understudy.GTID {
	tb.Helper()
	idx, err := os.ReadFile(filepath.Join(s.DataDir, "mariadb-bin.index"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []understudy.GTID
	for _, name := range strings.Fields(string(idx)) {
		out = append(out, FileGTIDs(tb, filepath.Join(s.DataDir, filepath.Base(name)))...)
	}
	return out
}

// FileGTIDs lists the GTIDs of the transactions in a binlog file (a
// server's or an archived one), in order, up to a torn tail.
func FileGTIDs(tb testing.TB, path string) []understudy.GTID {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r, err := binlog.NewReader(bufio.NewReader(f))
	if err != nil {
		tb.Fatal(err)
	}
	var out []understudy.GTID
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		if ev[4] == binlog.GTIDEvent {
			g, err := binlog.ParseGTIDEvent(ev, r.Checksum())
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, g.GTID)
		}
	}
}

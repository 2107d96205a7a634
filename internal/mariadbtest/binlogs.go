package mariadbtest

import (
	"testing"
	"time"
)

// BinaryLogs returns the names of the server's binlog files, oldest first
// (SHOW BINARY LOGS).
func (s *Server) BinaryLogs(tb testing.TB) []string {
	tb.Helper()
	rows, err := s.DB(tb).Query("SHOW BINARY LOGS")
	if err != nil {
		tb.Fatalf("mariadbtest: port %d: SHOW BINARY LOGS: %v", s.Port, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		var size any
		if err := rows.Scan(&name, &size); err != nil {
			tb.Fatal(err)
		}
		out = append(out, name)
	}
	return out
}

// PurgeBinlogs rotates the binlog and purges every file but the new one,
// as a primary that has purged its history: a file that a dump thread
// still reads is not purged at once, so it retries for up to 20 s.
func (s *Server) PurgeBinlogs(tb testing.TB) {
	tb.Helper()
	s.Exec(tb, "FLUSH BINARY LOGS")
	deadline := time.Now().Add(20 * time.Second)
	for {
		logs := s.BinaryLogs(tb)
		if len(logs) == 1 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mariadbtest: port %d: could not purge binlogs: %v", s.Port, logs)
		}
		s.Exec(tb, "PURGE BINARY LOGS TO '"+logs[len(logs)-1]+"'")
		time.Sleep(200 * time.Millisecond)
	}
}

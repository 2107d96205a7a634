package mariadbtest

import (
	"os"
	"path/filepath"
	"testing"
)

// ErrorLog returns the server's whole error.log, for tests that check what
// the server itself reported (a dump thread's start, say: with the default
// log_warnings=2 MariaDB logs "Start binlog_dump to slave_server(N)" for
// each dump, and "Start semi-sync binlog_dump to slave (server_id: N)" for
// each one that registered as a semi-sync replica).
func (s *Server) ErrorLog(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(s.DataDir, "error.log"))
	if err != nil {
		tb.Fatalf("mariadbtest: %v", err)
	}
	return string(b)
}

package mariadbtest

import (
	"database/sql"
	"maps"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

func TestStartRestart(t *testing.T) {
	s := Start(t, Options{DomainID: 7})
	s.Exec(t, `CREATE DATABASE d;
		CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(20));
		CREATE VIEW d.v AS SELECT id FROM d.t`)
	s.Exec(t, "INSERT INTO d.t VALUES (?, ?)", 1, "hello")

	if got, want := s.QueryString(t, "SELECT @@binlog_format"), "ROW"; got != want {
		t.Fatalf("binlog_format = %q, want %q", got, want)
	}
	if got, want := s.QueryString(t, "SELECT NULL"), ""; got != want {
		t.Fatalf("NULL scanned as %q, want %q", got, want)
	}
	pos := s.GTIDBinlogPos(t)
	if got, want := strings.HasPrefix(pos, "7-1-"), true; got != want {
		t.Fatalf("gtid_binlog_pos = %q, want prefix %q", pos, "7-1-")
	}
	sums := s.Checksums(t, "d", "missing")
	if got, want := len(sums), 1; got != want {
		t.Fatalf("Checksums = %v, want %d entry", sums, want)
	}
	if sums["d.t"] == "" || sums["d.t"] == "0" {
		t.Fatalf("Checksums[d.t] = %q, want a non-zero checksum", sums["d.t"])
	}

	port := s.Port
	s.Kill(t)
	if err := s.DB(t).Ping(); err == nil {
		t.Fatal("Ping after Kill succeeded, want an error")
	}
	s.Restart(t)
	if got, want := s.Port, port; got != want {
		t.Fatalf("port after Restart = %d, want %d", got, want)
	}
	if got, want := s.QueryString(t, "SELECT v FROM d.t WHERE id = ?", 1), "hello"; got != want {
		t.Fatalf("row after crash recovery: v = %q, want %q", got, want)
	}
	if got, want := s.GTIDBinlogPos(t), pos; got != want {
		t.Fatalf("gtid_binlog_pos after Restart = %q, want %q", got, want)
	}
	if got, want := s.Checksums(t, "d"), sums; !maps.Equal(got, want) {
		t.Fatalf("Checksums after Restart = %v, want %v", got, want)
	}

	s.Stop(t)
	s.Restart(t)
	if got, want := s.QueryString(t, "SELECT COUNT(*) FROM d.t"), "1"; got != want {
		t.Fatalf("rows after graceful Restart = %q, want %q", got, want)
	}

	s2 := Start(t, Options{ServerID: 2, NoBinlog: true, SemiSync: true, Args: []string{"--max-connections=50"}})
	if s2.Port == s.Port {
		t.Fatalf("both servers on port %d", s.Port)
	}
	for _, c := range []struct {
		srv         *Server
		query, want string
	}{
		{s, "SELECT @@server_id", "1"},
		{s, "SELECT @@log_bin", "1"},
		{s2, "SELECT @@server_id", "2"},
		{s2, "SELECT @@log_bin", "0"},
		{s2, "SELECT @@rpl_semi_sync_master_enabled", "1"},
		{s2, "SELECT @@max_connections", "50"},
	} {
		if got := c.srv.QueryString(t, c.query); got != c.want {
			t.Fatalf("port %d: %s = %q, want %q", c.srv.Port, c.query, got, c.want)
		}
	}

	s2.CreateUser(t, "repl", "secret", "REPLICATION SLAVE ON *.*")
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = "repl", "secret", "tcp", net.JoinHostPort(s2.Host, strconv.Itoa(s2.Port))
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var grants string
	if err := db.QueryRow("SHOW GRANTS").Scan(&grants); err != nil {
		t.Fatalf("connecting as repl: %v", err)
	}
	if got, want := strings.Contains(grants, "REPLICATION SLAVE"), true; got != want {
		t.Fatalf("SHOW GRANTS = %q, want REPLICATION SLAVE", grants)
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestTLS archives over a TLS connection that the primary requires, with
// the server certificate verified against a CA; a wrong CA is refused.
func TestTLS(t *testing.T) {
	certs := t.TempDir()
	ca, caKey := mariadbtest.WriteCert(t, certs, "ca", nil, nil)
	mariadbtest.WriteCert(t, certs, "server", ca, caKey)
	mariadbtest.WriteCert(t, certs, "other-ca", nil, nil)
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, DomainID: 9, Args: []string{
		"--ssl-ca=" + filepath.Join(certs, "ca.pem"), "--ssl-cert=" + filepath.Join(certs, "server.pem"), "--ssl-key=" + filepath.Join(certs, "server.key"),
	}})
	p.Exec(t, "CREATE USER understudy@'%' IDENTIFIED BY 'pw' REQUIRE SSL")
	p.Exec(t, "GRANT REPLICATION SLAVE ON *.* TO understudy@'%'")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO app.t VALUES (1)")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "understudy.yaml")
	write := func(ca string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf(`archive:
  dir: archive
http:
  listen: "off"
sources:
  - name: db
    host: 127.0.0.1
    port: %d
    user: understudy
    password: pw
    server_id: 9800
    tls:
      ca: %s
`, p.Port, filepath.Join(certs, ca))), 0o644)
	}

	write("other-ca.pem")
	srcCfg, err := loadSource(cfg, "db")
	if err != nil {
		t.Fatal(err)
	}
	runUntilError(t, srcCfg, filepath.Join(dir, "archive", "db"), "certificate")

	write("ca.pem")
	stop := startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 20*time.Second)
	stop()
	checkExactlyOnce(t, p, filepath.Join(dir, "archive", "db"))
	if got := p.QueryString(t, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER='understudy'"); got != "0" {
		t.Logf("understudy connections still open: %s", got)
	}
}

// TestServeTLS: a replica that requires TLS replicates from the binlog
// server's certificate; one with MASTER_SSL=0 is refused, since serve.tls
// requires TLS, and gets nothing.
func TestServeTLS(t *testing.T) {
	certs := t.TempDir()
	ca, caKey := mariadbtest.WriteCert(t, certs, "ca", nil, nil)
	mariadbtest.WriteCert(t, certs, "server", ca, caKey)
	p := startPrimary(t, 1, 1)
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO app.t VALUES (1), (2), (3)")
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: addr})
	addSnapshotConfig(t, cfg, fmt.Sprintf("      tls:\n        cert: %s\n        key: %s\n", filepath.Join(certs, "server.pem"), filepath.Join(certs, "server.key")))
	startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplicaOf(t, r, "plain", addr, ", MASTER_SSL=0")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st := replicaStatus(t, r, "plain")
		if strings.Contains(st["Last_IO_Error"], "requires TLS") {
			if st["Slave_IO_Running"] == "Yes" {
				t.Fatalf("replica without TLS: IO thread running: %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica without TLS: no error saying TLS is required after 30s: %v", st)
		}
	}
	r.Exec(t, "STOP SLAVE 'plain'")
	if got := r.QueryString(t, "SELECT @@global.gtid_slave_pos"); got != "" {
		t.Fatalf("replica without TLS got transactions: gtid_slave_pos %q", got)
	}
	r.Exec(t, "RESET SLAVE 'plain' ALL")
	startReplicaOf(t, r, "u", addr, ", MASTER_SSL=1, MASTER_SSL_CA='"+filepath.Join(certs, "ca.pem")+"', MASTER_SSL_VERIFY_SERVER_CERT=1")
	waitReplica(t, r, "u", p.GTIDBinlogPos(t), 60*time.Second)
	sameChecksums(t, p, r, "app")
	if got := replicaStatus(t, r, "u")["Master_SSL_Allowed"]; got != "Yes" {
		t.Fatalf("Master_SSL_Allowed=%q", got)
	}
}

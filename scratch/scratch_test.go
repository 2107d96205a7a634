package scratch

import (
	"context"
	"os"
	"testing"
)

// TestStartClose starts a scratch server, checks it holds no user data and
// takes the root password only, and that Close removes everything.
func TestStartClose(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{ServerID: 77})
	if err != nil {
		t.Fatal(err)
	}
	db, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	var id int
	var dbs int
	if err := db.QueryRow("SELECT @@server_id, (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys'))").Scan(&id, &dbs); err != nil {
		t.Fatal(err)
	}
	if id != 77 || dbs != 0 {
		t.Fatalf("server_id %d, %d user databases: want 77 and none", id, dbs)
	}
	if _, err := db.Exec("CREATE TABLE mysql.scratch_probe (id INT)"); err != nil {
		t.Fatalf("root cannot write: %v", err)
	}
	db.Close()
	s2 := *s
	s2.Password = "wrong"
	bad, _ := s2.Open()
	if err := bad.Ping(); err == nil {
		t.Fatal("a wrong password logs in")
	}
	bad.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.DataDir); !os.IsNotExist(err) {
		t.Fatalf("data directory left after Close: %v", err)
	}
}

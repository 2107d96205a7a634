package snapshot

import (
	"context"
	"testing"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestServerSQLModes: a source and a target whose global sql_mode is far
// from the default (ORACLE on the source; ANSI_QUOTES, NO_BACKSLASH_ESCAPES
// and PIPES_AS_CONCAT on the target) do not change what a snapshot reads,
// loads or checksums. The data holds what those modes would bend: an
// AUTO_INCREMENT row with id 0 (a mode without NO_AUTO_VALUE_ON_ZERO
// gives it a new id), backslashes, tabs and NULLs, a CHAR column, an
// invalid date the source accepted with ALLOW_INVALID_DATES, and a table
// whose CREATE TABLE the source would print in Oracle form.
func TestServerSQLModes(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{Args: []string{"--sql-mode=ORACLE"}})
	for _, q := range []string{
		"CREATE DATABASE m",
		"CREATE TABLE m.a (id INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(40), c CHAR(8), d DATE, n INT, KEY (s))",
		"SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES'; INSERT INTO m.a VALUES (0, 'zero', 'z', '2024-02-30', NULL), (1, 'back\\\\slash\\ttab', 'c  ', '0000-00-00', 1), (2, NULL, NULL, NULL, 2), (3, '', '', '2024-01-01', 3); SET SESSION sql_mode = DEFAULT",
		"CREATE TABLE m.\"quoted\" (id INT PRIMARY KEY, v VARCHAR(10) DEFAULT 'x')",
		"INSERT INTO m.\"quoted\" (id) VALUES (1), (2)",
	} {
		p.Exec(t, q)
	}
	// (DATE is DATETIME in Oracle mode.)
	zero := p.QueryString(t, "SELECT CONCAT(id, '/', d) FROM m.a WHERE s = 'zero'")
	if zero != "0/2024-02-30 00:00:00" {
		t.Fatalf("m.a's zero row on the source: %q", zero)
	}
	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2, ChunkRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true, Args: []string{"--sql-mode=ANSI_QUOTES,NO_BACKSLASH_ESCAPES,PIPES_AS_CONCAT"}})
	var verified int
	if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true, Verified: &verified}); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(ctx, target.DB(t), m, nil, 2); err != nil || n != verified || n < 2 {
		t.Fatalf("verification on the target: %d chunks (%d by the load): %v", n, verified, err)
	}
	want := p.Checksums(t, "m")
	if len(want) != 2 {
		t.Fatalf("tables on the source: %v", want)
	}
	mariadbtest.SameChecksums(t, "the target", want, target.Checksums(t, "m"))
	if got := target.QueryString(t, "SELECT CONCAT(id, '/', d) FROM m.a WHERE s = 'zero'"); got != zero {
		t.Errorf("m.a's zero row on the target: %q", got)
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM m.a"); got != "4" {
		t.Errorf("m.a has %s rows on the target", got)
	}
}

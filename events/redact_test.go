package events

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// Account statements.
		{`CREATE USER 'u'@'%' IDENTIFIED BY 'pw'`, `CREATE USER 'u'@'%' IDENTIFIED BY '<secret>'`},
		{`create user u@localhost identified by "pw" password expire`, `create user u@localhost identified by '<secret>' password expire`},
		{`CREATE USER a IDENTIFIED BY 'x', b IDENTIFIED BY 'y'`, `CREATE USER a IDENTIFIED BY '<secret>', b IDENTIFIED BY '<secret>'`},
		{`CREATE USER u IDENTIFIED BY PASSWORD '*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29'`, `CREATE USER u IDENTIFIED BY PASSWORD '<secret>'`},
		{`ALTER USER 'u'@'%' IDENTIFIED BY 'new pw'`, `ALTER USER 'u'@'%' IDENTIFIED BY '<secret>'`},
		{`ALTER USER IF EXISTS u IDENTIFIED  BY
'pw'`, `ALTER USER IF EXISTS u IDENTIFIED  BY
'<secret>'`},
		{`GRANT SELECT ON *.* TO 'u'@'%' IDENTIFIED BY 'pw' WITH GRANT OPTION`, `GRANT SELECT ON *.* TO 'u'@'%' IDENTIFIED BY '<secret>' WITH GRANT OPTION`},
		{`SET PASSWORD FOR 'u'@'%' = PASSWORD('pw')`, `SET PASSWORD FOR 'u'@'%' = PASSWORD('<secret>')`},
		{`SET PASSWORD = 'pw'`, `SET PASSWORD = '<secret>'`},
		{`SET PASSWORD FOR u@h='*hash'`, `SET PASSWORD FOR u@h='<secret>'`},
		{`SET PASSWORD = OLD_PASSWORD('pw')`, `SET PASSWORD = OLD_PASSWORD('<secret>')`},
		{`CREATE USER u IDENTIFIED VIA ed25519 USING PASSWORD('pw')`, `CREATE USER u IDENTIFIED VIA ed25519 USING PASSWORD('<secret>')`},
		{`CREATE USER u IDENTIFIED VIA mysql_native_password USING '*hash' OR unix_socket`, `CREATE USER u IDENTIFIED VIA mysql_native_password USING '<secret>' OR unix_socket`},
		{`ALTER USER u IDENTIFIED VIA ed25519 USING PASSWORD('a') OR mysql_native_password USING PASSWORD('b')`, `ALTER USER u IDENTIFIED VIA ed25519 USING PASSWORD('<secret>') OR mysql_native_password USING PASSWORD('<secret>')`},
		{`CREATE USER u IDENTIFIED WITH mysql_native_password AS '*hash'`, `CREATE USER u IDENTIFIED WITH mysql_native_password AS '<secret>'`},
		{`CHANGE MASTER TO MASTER_HOST='h', MASTER_PASSWORD='pw'`, `CHANGE MASTER TO MASTER_HOST='h', MASTER_PASSWORD='<secret>'`},
		// Escaped and doubled quotes end the secret only where the literal ends.
		{`CREATE USER u IDENTIFIED BY 'it\'s'`, `CREATE USER u IDENTIFIED BY '<secret>'`},
		{`CREATE USER u IDENTIFIED BY 'it''s' PASSWORD EXPIRE`, `CREATE USER u IDENTIFIED BY '<secret>' PASSWORD EXPIRE`},
		{`CREATE USER u IDENTIFIED BY 'a\\' ACCOUNT LOCK`, `CREATE USER u IDENTIFIED BY '<secret>' ACCOUNT LOCK`},
		{`CREATE USER u IDENTIFIED BY "say \"hi\""`, `CREATE USER u IDENTIFIED BY '<secret>'`},
		{`SET PASSWORD FOR u = PASSWORD('x\')y')`, `SET PASSWORD FOR u = PASSWORD('<secret>')`},
		// Prefixes, comments, executable comments.
		{`CREATE USER u IDENTIFIED BY _utf8mb4'pw'`, `CREATE USER u IDENTIFIED BY '<secret>'`},
		{`CREATE USER u IDENTIFIED BY N'pw'`, `CREATE USER u IDENTIFIED BY '<secret>'`},
		{`CREATE USER u IDENTIFIED /* by */ BY /* c */ 'pw'`, `CREATE USER u IDENTIFIED /* by */ BY /* c */ '<secret>'`},
		{`/*!100000 CREATE USER u IDENTIFIED BY 'pw' */`, `/*!100000 CREATE USER u IDENTIFIED BY '<secret>' */`},
		{"CREATE USER u IDENTIFIED BY -- x\n'pw'", "CREATE USER u IDENTIFIED BY -- x\n'<secret>'"},
		{"CREATE USER u IDENTIFIED BY --\t'x'\n'pw'", "CREATE USER u IDENTIFIED BY --\t'x'\n'<secret>'"},
		{`SELECT 1--1; CREATE USER u IDENTIFIED BY 'pw'`, `SELECT 1--1; CREATE USER u IDENTIFIED BY '<secret>'`},
		{`/*M!100500 ALTER USER u IDENTIFIED BY 'pw' */`, `/*M!100500 ALTER USER u IDENTIFIED BY '<secret>' */`},
		// Not terminated: redacted to the end.
		{`CREATE USER u IDENTIFIED BY 'pw`, `CREATE USER u IDENTIFIED BY '<secret>'`},
		// Nothing to redact: kept byte for byte.
		{`INSERT INTO t VALUES ('IDENTIFIED BY ''x''', "password('y')")`, `INSERT INTO t VALUES ('IDENTIFIED BY ''x''', "password('y')")`},
		{"UPDATE `identified` SET `by`='x', password='y'", "UPDATE `identified` SET `by`='x', password='y'"},
		{`INSERT INTO users (name, password) VALUES ('a', 'b')`, `INSERT INTO users (name, password) VALUES ('a', 'b')`},
		{`CREATE TABLE t AS SELECT 'x' AS a`, `CREATE TABLE t AS SELECT 'x' AS a`},
		{`CREATE USER u /* IDENTIFIED BY */ 'x'`, `CREATE USER u /* IDENTIFIED BY */ 'x'`},
		{`DROP USER u; SELECT 'using'`, `DROP USER u; SELECT 'using'`},
		{`CREATE USER u IDENTIFIED BY 'a'; SELECT 1 AS 'b'`, `CREATE USER u IDENTIFIED BY '<secret>'; SELECT 1 AS 'b'`},
		{``, ``},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// TestRedactMessage: a replica's Last_SQL_Error quotes the statement that
// failed; its password never reaches understudy's messages.
func TestRedactMessage(t *testing.T) {
	for in, want := range map[string]string{
		"Error 'Operation CREATE USER failed for 'app'@'%'' on query. Default database: ''. Query: 'CREATE USER 'app'@'%' IDENTIFIED BY 's3cret''": "Error 'Operation CREATE USER failed for 'app'@'%'' on query. Default database: ''. Query: 'CREATE USER 'app'@'%' IDENTIFIED BY '<secret>''",
		"Error 'x' on query. Default database: 'd'. Query: 'SET PASSWORD FOR u = PASSWORD('pw')'":                                                  "Error 'x' on query. Default database: 'd'. Query: 'SET PASSWORD FOR u = PASSWORD('<secret>')'",
		"Could not execute Write_rows_v1 event on table a.t; Duplicate entry '1' for key 'PRIMARY'":                                                "Could not execute Write_rows_v1 event on table a.t; Duplicate entry '1' for key 'PRIMARY'",
	} {
		if got := RedactMessage(in); got != want {
			t.Errorf("RedactMessage(%q)\n = %q\nwant %q", in, got, want)
		}
		if strings.Contains(RedactMessage(in), "s3cret") || strings.Contains(RedactMessage(in), "('pw')") {
			t.Errorf("a password is left in %q", RedactMessage(in))
		}
	}
}

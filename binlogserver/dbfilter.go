package binlogserver

import (
	"regexp"
	"strings"

	"github.com/understudy-db/understudy/binlog"
)

// routineDDL matches the statements that create, change or drop an object
// that is no table: procedures, functions, packages and events. A replica's
// table filters (replicate_wild_do_table) let them all through whatever
// their database, so a restore limited to some databases filters them here.
// Groups: 1 the first name part, 2 the second (then 1 is the database).
var routineDDL = regexp.MustCompile("(?is)^\\s*(?:/\\*.*?\\*/\\s*)*(?:CREATE|ALTER|DROP)\\s+(?:OR\\s+REPLACE\\s+)?" +
	"(?:DEFINER\\s*=\\s*(?:`[^`]*`|'[^']*'|[^\\s@]+)(?:\\s*@\\s*(?:`[^`]*`|'[^']*'|[^\\s]+))?\\s+)?" +
	"(?:AGGREGATE\\s+)?(?:PROCEDURE|FUNCTION|EVENT|PACKAGE(?:\\s+BODY)?)\\s+(?:IF\\s+(?:NOT\\s+)?EXISTS\\s+)?" +
	"(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)(?:\\s*\\.\\s*(`(?:[^`]|``)+`|[A-Za-z0-9_$]+))?")

// routineDatabase returns the database of the routine or event that a
// statement creates, changes or drops, and false for any other statement.
// An unqualified name is in the statement's default database.
func routineDatabase(sql, defaultDB string) (string, bool) {
	m := routineDDL.FindStringSubmatch(sql)
	if m == nil {
		return "", false
	}
	if m[2] == "" {
		return defaultDB, true
	}
	return unquoteIdent(m[1]), true
}

func unquoteIdent(s string) string {
	if len(s) >= 2 && s[0] == '`' && s[len(s)-1] == '`' {
		return strings.ReplaceAll(s[1:len(s)-1], "``", "`")
	}
	return s
}

// skippedStatement replaces a statement that a restore limited to some
// databases must not apply: the replica executes it as a no-op, so that its
// GTID is still applied and the replay reaches its end point.
const skippedStatement = "DO 0 /* understudy: not in the restored databases */"

// filterQuery returns the QUERY event ev as the replica gets it: unchanged,
// or, when the server is limited to some databases (Config.Databases) and
// the event creates, changes or drops a routine or event of another
// database, with its statement replaced by a no-op of the same length.
func (st *stream) filterQuery(ev []byte) ([]byte, error) {
	dbs := st.h.srv.cfg.Databases
	if len(dbs) == 0 || ev[4] != binlog.QueryEvent {
		return ev, nil
	}
	q, err := binlog.ParseQuery(ev, st.c.Checksum())
	if err != nil {
		return ev, nil // not ours to judge: the replica applies it as it is
	}
	db, ok := routineDatabase(q.SQL, q.Database)
	if !ok {
		return ev, nil
	}
	for _, d := range dbs {
		if d == db {
			return ev, nil
		}
	}
	if len(q.SQL) < len(skippedStatement) {
		return ev, nil // cannot be (no such statement is this short)
	}
	st.h.log.Info("not applying a statement of a database outside the restore", "database", db, "statement", truncate(q.SQL, 120))
	return binlog.ReplaceQuery(ev, st.c.Checksum(), skippedStatement)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

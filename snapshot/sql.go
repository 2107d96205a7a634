package snapshot

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// Chunk checksums. Each row has a 64-bit hash, CRC32 in the high half and
// CRC32C in the low half of one string made of the row's values; a chunk's
// checksum is the XOR of its rows' hashes (order-free, so the server and
// the snapshot may read rows in any order). Two CRCs with different
// polynomials make accidental collisions far rarer than one
// (pt-table-checksum's single CRC32), at a fraction of SHA2's cost.
const (
	// ChecksumName is the checksum of new snapshots. The row string is
	// CONCAT_WS('#', CAST(col AS BINARY)..., CONCAT(ISNULL(col)...)): the
	// non-NULL values' own bytes (what the text protocol sends with
	// character_set_results=binary; FLOAT, UUID and INET as hashExpr
	// says), then a NULL flag per column. The
	// snapshot computes it from the rows it writes; a server computes the
	// same with ChecksumSQL.
	ChecksumName = "bitxor64-crc32-crc32c-concat_ws-binary-v2"
	// checksumV1 was computed by the server during the dump, without the
	// casts (so mixed character sets were converted). Still verifiable.
	checksumV1 = "bitxor64-crc32-crc32c-concat_ws-v1"
)

// quote quotes an identifier.
func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

func qualified(db, table string) string { return quote(db) + "." + quote(table) }

// from is the FROM of a query over a chunk of t: every row of a
// system-versioned table, its history included, and through the chunk
// key's index when it is a secondary one, so that each chunk reads its
// range of the index and not the whole table.
func (t Table) from(db, where string) string {
	from := qualified(db, t.Name)
	if t.Kind == KindVersioned {
		from += " FOR SYSTEM_TIME ALL"
	}
	if where == "" || t.ChunkIndex == "" {
		return from
	}
	return from + " FORCE INDEX (" + quote(t.ChunkIndex) + ")"
}

// ChecksumSQL returns the query computing a chunk's row count and
// checksum on a server, for a checksum named as in a manifest. The session
// must use time_zone '+00:00' for TIMESTAMP columns to compare across
// servers.
func ChecksumSQL(checksum, db string, t Table, where string) (string, error) {
	row, err := rowHashSQL(checksum, t)
	if err != nil {
		return "", err
	}
	q := fmt.Sprintf("SELECT COUNT(*), COALESCE(BIT_XOR(%s), 0) FROM %s", row, t.from(db, where))
	if where != "" {
		q += " WHERE " + where
	}
	return q, nil
}

// rowHashSQL is the expression of one row's 64-bit hash, whose XOR over
// a chunk's rows is the chunk's checksum.
func rowHashSQL(checksum string, t Table) (string, error) {
	if checksum != ChecksumName && checksum != checksumV1 {
		return "", fmt.Errorf("unknown chunk checksum %q: this snapshot was made by a newer understudy", checksum)
	}
	var cols, nulls []string
	for i, c := range t.Columns {
		col := quote(c)
		if checksum == ChecksumName {
			col = hashExpr(col, t.Types[i])
		}
		cols = append(cols, col)
		nulls = appendNullFlag(nulls, "ISNULL("+quote(c)+")", i < len(t.NotNull) && t.NotNull[i])
	}
	flags := "''"
	switch {
	case len(nulls) == 1:
		flags = nulls[0]
	case len(nulls) > 1:
		flags = "CONCAT(" + strings.Join(nulls, ", ") + ")"
	}
	expr := fmt.Sprintf("CONCAT_WS('#', %s, %s)", strings.Join(cols, ", "), flags)
	return fmt.Sprintf("((CRC32(%s) << 32) | CRC32C(%s))", expr, expr), nil
}

// AlsoNotNull returns t with only those columns NOT NULL that are NOT
// NULL in other too (other's columns by name). Two servers computing one
// chunk's checksum then test for NULL wherever either may hold one, so
// that a NULL on one side is never taken for another value (with values
// containing '#', ('x#y', NULL) and ('x', 'y') make the same string
// without their flags).
func (t Table) AlsoNotNull(other Table) Table {
	notNull := map[string]bool{}
	for i, c := range other.Columns {
		notNull[c] = i < len(other.NotNull) && other.NotNull[i]
	}
	return t.notNullWhere(func(col string) bool { return notNull[col] })
}

// notNullWhere returns t with only those columns NOT NULL for which also
// says so.
func (t Table) notNullWhere(also func(col string) bool) Table {
	nn := make([]bool, len(t.Columns))
	for i, c := range t.Columns {
		nn[i] = i < len(t.NotNull) && t.NotNull[i] && also(c)
	}
	t.NotNull = nn
	return t
}

// appendNullFlag appends a column's NULL flag to flags: ISNULL(col), or
// for a NOT NULL column the constant '0' it always is, merged with a
// constant before it. A server evaluates ISNULL and CONCAT for every row:
// on sysbench's four NOT NULL columns the constant takes 30% off the
// checksum's cost (BENCHMARKS.md, issue 15). A NULL that a NOT NULL column
// of the source gets on a target still changes the row's string, as
// CONCAT_WS leaves the value out.
func appendNullFlag(flags []string, isNull string, notNull bool) []string {
	if !notNull {
		return append(flags, isNull)
	}
	if n := len(flags); n > 0 && strings.HasPrefix(flags[n-1], "'") {
		flags[n-1] = flags[n-1][:len(flags[n-1])-1] + "0'"
		return flags
	}
	return append(flags, "'0'")
}

// ChunkChecksum runs ChecksumSQL on conn. A row whose string the server
// could not build is an error (see checkRowHashes): BIT_XOR would have
// left it out.
func ChunkChecksum(ctx context.Context, conn *sql.Conn, checksum, db string, t Table, where string) (rows int64, sum string, err error) {
	q, err := ChecksumSQL(checksum, db, t, where)
	if err != nil {
		return 0, "", err
	}
	if err = conn.QueryRowContext(ctx, q).Scan(&rows, &sum); err != nil {
		return 0, "", err
	}
	return rows, sum, checkRowHashes(ctx, conn)
}

// checkRowHashes fails if the checksum query just run on conn left a
// warning. A value or row string longer than the server's
// max_allowed_packet becomes NULL with warning 1301: CONCAT_WS leaves such
// a value out of the row's string, and BIT_XOR leaves a NULL row hash out
// of the checksum while COUNT(*) counts the row. A difference in a large
// row would go unseen, and a good copy's checksum would differ from the
// snapshot's, which understudy computed itself. No other warning is
// expected from the query; any is an error.
func checkRowHashes(ctx context.Context, conn *sql.Conn) error {
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT @@warning_count").Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	var level, msg string
	var code int
	if err := conn.QueryRowContext(ctx, "SHOW WARNINGS LIMIT 1").Scan(&level, &code, &msg); err != nil {
		return err
	}
	if code == 1301 {
		var packet int64
		conn.QueryRowContext(ctx, "SELECT @@global.max_allowed_packet").Scan(&packet)
		return fmt.Errorf("a row is too large for the server to checksum: %s; raise max_allowed_packet (SET GLOBAL max_allowed_packet = 1073741824, now %d) and run again", msg, packet)
	}
	return fmt.Errorf("the checksum query left %d warnings, the first: %s %d: %s", n, level, code, msg)
}

// hashExpr is the text of a column that the checksum hashes: the text the
// dump writes (see dumpExpr), as bytes.
func hashExpr(col, typ string) string {
	switch {
	case typ == "float":
		return "CAST(CAST(" + col + " AS DOUBLE) AS BINARY)"
	case textOnly[typ]:
		// Cast to BINARY, UUID and INET are their binary form; their text
		// is what the protocol sends.
		return "CAST(" + col + " AS CHAR)"
	}
	return "CAST(" + col + " AS BINARY)"
}

// dumpExpr is how a dump selects a column: as text that loads back to the
// same value, and that is byte for byte hashExpr's. The driver would parse
// integer, YEAR and DOUBLE columns into numbers (YEAR 0000 would become 0,
// which LOAD DATA reads as 2000; ZEROFILL's padding would be lost), so
// they are cast to BINARY and stay bytes. FLOAT's own text has six digits
// and loses precision (16777216 is sent as 16777200); as a DOUBLE it has
// all its digits.
func dumpExpr(col, typ, colType string) string {
	switch {
	case typ == "float":
		return hashExpr(col, typ)
	case typ == "year" || typ == "double" || strings.Contains(colType, "zerofill") || intTypes[typ]:
		return "CAST(" + col + " AS BINARY)"
	}
	return col
}

// intTypes are selected as bytes too: the driver would parse them into
// numbers, which the dump then formats back. On 16 threads that was 12% of
// a snapshot's CPU (BENCHMARKS.md, issue 15).
var intTypes = map[string]bool{"tinyint": true, "smallint": true, "mediumint": true, "int": true, "bigint": true}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chunkHasher computes the ChecksumName checksum of rows as they are read.
type chunkHasher struct {
	row   []byte // the row string, reused
	flags []byte
	sum   uint64
	rows  int64
}

// add hashes one row; a nil value is NULL.
func (h *chunkHasher) add(vals [][]byte) {
	h.row, h.flags = h.row[:0], h.flags[:0]
	for _, v := range vals {
		if v == nil {
			h.flags = append(h.flags, '1')
			continue
		}
		h.flags = append(h.flags, '0')
		h.row = append(h.row, v...)
		h.row = append(h.row, '#')
	}
	h.row = append(h.row, h.flags...)
	h.sum ^= uint64(crc32.ChecksumIEEE(h.row))<<32 | uint64(crc32.Checksum(h.row, castagnoli))
	h.rows++
}

func (h *chunkHasher) String() string { return strconv.FormatUint(h.sum, 10) }

// CloseSession closes c for good instead of returning it to its pool: a
// snapshot's or a load's connections carry session settings
// (sessionSetup, sql_log_bin=0, foreign_key_checks=0, a default database,
// an open transaction's isolation level) that the pool's next user must
// not inherit.
func CloseSession(c *sql.Conn) {
	c.Raw(func(any) error { return driver.ErrBadConn })
	c.Close()
}

// sessionSetup is run on every connection that reads, writes or checks
// snapshot data or schemas: UTC for TIMESTAMP text, values in their
// columns' own bytes, no timeouts while a slow disk or a big chunk holds
// the stream, and one sql_mode whatever the server's global one is (an
// ORACLE or ANSI_QUOTES server would print SHOW CREATE TABLE in its own
// dialect, and functions such as CONCAT change with it). The mode keeps a
// row's AUTO_INCREMENT id 0 as 0, accepts the invalid dates a source kept
// with ALLOW_INVALID_DATES, and refuses (STRICT_ALL_TABLES) to load a value
// it would have to change.
var sessionSetup = []string{
	"SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES,NO_ENGINE_SUBSTITUTION'",
	"SET SESSION time_zone = '+00:00'",
	"SET SESSION sql_quote_show_create = 1",
	"SET SESSION character_set_results = binary",
	"SET SESSION net_write_timeout = 3600",
	"SET SESSION net_read_timeout = 3600",
	"SET SESSION max_statement_time = 0",
}

// SetupSession runs sessionSetup and then more on c: every connection
// that reads rows to checksum or copy them uses it, so that two servers
// compute the same text whatever their global settings.
func SetupSession(ctx context.Context, c *sql.Conn, more ...string) error {
	for _, q := range append(append([]string(nil), sessionSetup...), more...) {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return explain(err)
		}
	}
	return nil
}

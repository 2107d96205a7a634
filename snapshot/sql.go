package snapshot

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// ChecksumName names the chunk checksum in manifests.
const ChecksumName = "bitxor64-crc32-crc32c-concat_ws-v1"

// quote quotes an identifier.
func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

func qualified(db, table string) string { return quote(db) + "." + quote(table) }

// ChecksumSQL returns the query computing a chunk's row count and
// checksum: the XOR over rows of a 64-bit row hash, CRC32 in the high half
// and CRC32C in the low half of CONCAT_WS('#', columns..., NULL flags).
// Two CRCs with different polynomials make accidental collisions far rarer
// than one (pt-table-checksum's single CRC32), at a fraction of SHA2's cost.
// The session must use time_zone '+00:00' for TIMESTAMP columns to compare
// across servers.
func ChecksumSQL(db string, t Table, where string) string {
	q := fmt.Sprintf("SELECT COUNT(*), COALESCE(BIT_XOR(%s), 0) FROM %s", rowHash(t), qualified(db, t.Name))
	if where != "" {
		q += " WHERE " + where
	}
	return q
}

// rowHash is the 64-bit hash of one row that ChecksumSQL XORs.
func rowHash(t Table) string {
	var cols, nulls []string
	for _, c := range t.Columns {
		cols = append(cols, quote(c))
		nulls = append(nulls, "ISNULL("+quote(c)+")")
	}
	expr := fmt.Sprintf("CONCAT_WS('#', %s, CONCAT(%s))", strings.Join(cols, ", "), strings.Join(nulls, ", "))
	return fmt.Sprintf("((CRC32(%s) << 32) | CRC32C(%s))", expr, expr)
}

// ChunkChecksum runs ChecksumSQL on conn.
func ChunkChecksum(ctx context.Context, conn interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, db string, t Table, where string) (rows int64, sum string, err error) {
	err = conn.QueryRowContext(ctx, ChecksumSQL(db, t, where)).Scan(&rows, &sum)
	return rows, sum, err
}

// sessionSetup is run on every connection that reads or writes snapshot
// data: UTC for TIMESTAMP text, values in their columns' own bytes, and no
// timeouts while a slow disk or a big chunk holds the stream.
var sessionSetup = []string{
	"SET SESSION time_zone = '+00:00'",
	"SET SESSION character_set_results = binary",
	"SET SESSION net_write_timeout = 3600",
	"SET SESSION net_read_timeout = 3600",
	"SET SESSION max_statement_time = 0",
}

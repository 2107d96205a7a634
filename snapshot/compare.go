package snapshot

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// Plan lists the tables of the databases dbs on the server of c, with the
// chunks a snapshot would cut them into (their Where; no file, no
// checksum; none for a definitionOnly table), read in c's current
// transaction. Two servers holding the
// same data can then be compared chunk by chunk with ChunkChecksum: the
// chunks are ranges, valid on any server.
func Plan(ctx context.Context, c *sql.Conn, dbs []string, chunkRows int64) ([]Database, error) {
	if chunkRows <= 0 {
		chunkRows = 200000
	}
	return listDatabases(ctx, c, dbs, chunkRows)
}

// Tables lists the tables of the databases dbs on the server of c, with
// their stored columns, as Plan does but without cutting them into chunks.
func Tables(ctx context.Context, c *sql.Conn, dbs []string) ([]Database, error) {
	return listDatabases(ctx, c, dbs, 0)
}

// listDatabases is Plan, and with chunkRows 0 Tables.
func listDatabases(ctx context.Context, c *sql.Conn, dbs []string, chunkRows int64) ([]Database, error) {
	tables, err := listTables(ctx, c)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, d := range dbs {
		want[d] = true
	}
	var out []Database
	for _, ti := range tables {
		if !want[ti.db] {
			continue
		}
		var wheres []string
		if chunkRows > 0 && !ti.definitionOnly() { // their rows are another server's, or other tables'
			if wheres, err = planChunks(ctx, c, ti, chunkRows); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", ti.db, ti.t.Name, err)
			}
		}
		t := ti.t
		if len(wheres) > 1 && ti.key.index != "PRIMARY" {
			t.ChunkIndex = ti.key.index
		}
		for _, w := range wheres {
			t.Chunks = append(t.Chunks, Chunk{Where: w})
		}
		if len(out) == 0 || out[len(out)-1].Name != ti.db {
			out = append(out, Database{Name: ti.db})
		}
		out[len(out)-1].Tables = append(out[len(out)-1].Tables, t)
	}
	return out, nil
}

// RowSum is one row of a chunk: its primary key's values as text (the
// row's position in the chunk when the table has no primary key: nil)
// and its hash, whose XOR over the chunk is the chunk checksum.
type RowSum struct {
	Key []string
	Sum uint64
}

// KeyString is the key as `(a, b)`, for messages.
func (r RowSum) KeyString() string { return "(" + strings.Join(r.Key, ", ") + ")" }

// RowSums calls fn with every row of a chunk in the order of the primary
// key (of the row hash for a table without one), so that two servers'
// rows can be merged to find the rows that differ. conn must use
// time_zone '+00:00', as for ChunkChecksum.
func RowSums(ctx context.Context, conn *sql.Conn, checksum, db string, t Table, where string, fn func(RowSum) error) error {
	hash, err := rowHashSQL(checksum, t)
	if err != nil {
		return err
	}
	var keys []string
	for _, k := range t.PrimaryKey {
		keys = append(keys, quote(k))
	}
	sel, order := hash, "1"
	if len(keys) > 0 {
		sel = hash + ", " + strings.Join(keys, ", ")
		order = strings.Join(keys, ", ")
	}
	q := fmt.Sprintf("SELECT %s FROM %s", sel, t.from(db, where))
	if where != "" {
		q += " WHERE " + where
	}
	q += " ORDER BY " + order
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]sql.NullString, 1+len(keys))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		var r RowSum
		for _, v := range vals[1:] {
			if v.Valid {
				r.Key = append(r.Key, v.String)
			} else {
				r.Key = append(r.Key, "NULL")
			}
		}
		if !vals[0].Valid { // the server could not build the row's string
			rows.Close()
			if err := checkRowHashes(ctx, conn); err != nil {
				return fmt.Errorf("%s.%s row %s: %w", db, t.Name, r.KeyString(), err)
			}
			return fmt.Errorf("%s.%s row %s: the server computed no hash for it", db, t.Name, r.KeyString())
		}
		if r.Sum, err = strconv.ParseUint(vals[0].String, 10, 64); err != nil {
			return fmt.Errorf("%s.%s row %s: hash %q: %w", db, t.Name, r.KeyString(), vals[0].String, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// A value longer than max_allowed_packet is left out of its row's
	// string (CONCAT_WS skips the NULL its cast becomes), with a warning.
	if err := checkRowHashes(ctx, conn); err != nil {
		return fmt.Errorf("%s.%s: %w", db, t.Name, err)
	}
	return nil
}

package snapshot

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kinds of tables other than base tables (Table.Kind).
const (
	// KindSequence is a SEQUENCE: its one row is its state
	// (next_not_cached_value, ..., cycle_count), read when it is dumped and
	// loaded back with LOAD DATA, which sets the state as SETVAL does.
	KindSequence = "sequence"
	// KindVersioned is a system-versioned table with timestamp periods:
	// its data holds every row, history included (FOR SYSTEM_TIME ALL),
	// with its ROW START and ROW END columns (row_start and row_end when
	// they are implicit), loaded with system_versioning_insert_history.
	KindVersioned = "system_versioned"
	// KindVersionedTrx is a system-versioned table with transaction-precise
	// periods (ROW START and ROW END are transaction IDs of the source's
	// mysql.transaction_registry, which no other server can take): its data
	// holds the current rows only, and its history is not kept.
	KindVersionedTrx = "system_versioned_trx"
)

// definitionOnly says whether the table is saved without its rows: its
// engine keeps them outside the server's own tables. A FEDERATED or SPIDER
// table reads (and writes) another server, a MERGE table the MyISAM
// tables under it (saved on their own), SPHINX a search daemon, OQGRAPH
// the table it is declared over, and a CONNECT table another server, a
// file of its own (FILE_NAME) or nothing (virtual types). Loading their
// rows would write them there a second time, and reading them makes a
// snapshot depend on a remote server. (mariadb-dump leaves out the rows
// of MERGE and FEDERATED tables too.) A CONNECT table of a file type
// without FILE_NAME keeps its rows in a file of the database's directory,
// which dropping it deletes: those are saved.
func (ti tableInfo) definitionOnly() bool {
	switch strings.ToUpper(ti.t.Engine) {
	case "FEDERATED", "MRG_MYISAM", "SPIDER", "SPHINX", "OQGRAPH":
		return true
	case "CONNECT":
		// CREATE_OPTIONS: `TABLE_TYPE`=CSV `FILE_NAME`='/x.csv' … (names
		// quoted: sessionSetup sets sql_quote_show_create).
		opts := strings.ToUpper(ti.options)
		for _, outward := range []string{"`FILE_NAME`=", "`HTTP`=", "`URI`=", "`CONNECTION`=", "`SRCDEF`=", "`TABNAME`=", "`DBNAME`="} {
			if strings.Contains(opts, outward) {
				return true // another server's, or a file of its own
			}
		}
		typ := "DOS" // CONNECT's default
		if i := strings.Index(opts, "`TABLE_TYPE`="); i >= 0 {
			if f := strings.Fields(opts[i+len("`TABLE_TYPE`="):]); len(f) > 0 {
				typ = strings.Trim(f[0], "'")
			}
		}
		switch typ {
		case "CSV", "FMT", "DOS", "FIX", "BIN", "DBF", "VEC", "JSON", "BSON", "XML", "INI":
			return false // inward: its file is the table's own
		}
		return true
	}
	return false
}

// listTables lists the tables outside the system schemas (base tables,
// system-versioned tables and sequences) with their stored columns and the
// key their chunks are cut on, in three queries whatever the number of
// tables. Sequences come first, so that the tables whose defaults name
// them are created after them.
func listTables(ctx context.Context, c *sql.Conn) ([]tableInfo, error) {
	var out []tableInfo
	index := map[[2]string]*tableInfo{}
	err := queryRows(ctx, c, `SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(ENGINE, ''), COALESCE(TABLE_ROWS, 0), TABLE_TYPE, COALESCE(CREATE_OPTIONS, '')
		FROM information_schema.TABLES WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE')
		ORDER BY TABLE_SCHEMA, TABLE_TYPE != 'SEQUENCE', TABLE_NAME`, func(rows *sql.Rows) error {
		var ti tableInfo
		var typ string
		if err := rows.Scan(&ti.db, &ti.t.Name, &ti.t.Engine, &ti.rowsEst, &typ, &ti.options); err != nil {
			return err
		}
		switch typ {
		case "SEQUENCE":
			ti.t.Kind = KindSequence
		case "SYSTEM VERSIONED":
			ti.t.Kind = KindVersioned // KindVersionedTrx if its periods say so, below
		}
		if !isSystemSchema(ti.db) {
			out = append(out, ti)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		index[[2]string{out[i].db, out[i].t.Name}] = &out[i]
	}
	type column struct {
		typ, charset string
		nullable     bool
	}
	columns := map[[3]string]column{}
	periods := map[*tableInfo]bool{} // system-versioned tables with explicit period columns
	err = queryRows(ctx, c, `SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COALESCE(GENERATION_EXPRESSION, ''), EXTRA, DATA_TYPE, COLUMN_TYPE,
		IS_NULLABLE, COALESCE(CHARACTER_SET_NAME, ''), COALESCE(COLLATION_NAME, ''), COALESCE(COLUMN_DEFAULT, 'NULL') FROM information_schema.COLUMNS
		WHERE `+UserSchemas("TABLE_SCHEMA")+`
		ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION`, func(rows *sql.Rows) error {
		var db, table, name, gen, extra, typ, colType, nullable, charset, collation, def string
		if err := rows.Scan(&db, &table, &name, &gen, &extra, &typ, &colType, &nullable, &charset, &collation, &def); err != nil {
			return err
		}
		typ = strings.ToLower(typ)
		columns[[3]string{db, table, name}] = column{typ, charset, nullable == "YES"}
		ti := index[[2]string{db, table}]
		if ti == nil {
			return nil
		}
		ti.shape = append(ti.shape, "c", name, gen, extra, colType, nullable, collation, def)
		period := gen == "ROW START" || gen == "ROW END" // a system-versioned table's explicit period column
		if period {
			periods[ti] = true
			if typ != "timestamp" {
				ti.t.Kind = KindVersionedTrx
			}
		}
		if (gen == "" && !strings.Contains(strings.ToUpper(extra), "GENERATED")) || (period && typ == "timestamp") {
			ti.addColumn(name, typ, strings.ToLower(colType), nullable == "NO")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		ti := &out[i]
		if ti.t.Kind == KindVersioned && !periods[ti] {
			// Implicit periods: hidden columns, absent from COLUMNS.
			ti.addColumn("row_start", "timestamp", "timestamp(6)", true)
			ti.addColumn("row_end", "timestamp", "timestamp(6)", true)
		}
	}
	// The chunk key is the first column of the primary key, else of a
	// unique key, else of any index: ranges of it partition the rows
	// whether or not it is unique.
	rank := map[*tableInfo]int{}
	err = queryRows(ctx, c, `SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME,
		INDEX_TYPE, SUB_PART IS NOT NULL OR IGNORED = 'YES'
		FROM information_schema.STATISTICS WHERE `+UserSchemas("TABLE_SCHEMA")+`
		ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`, func(rows *sql.Rows) error {
		var db, table, index_, name, indexType string
		var nonUnique, seq int
		var prefix bool
		if err := rows.Scan(&db, &table, &index_, &nonUnique, &seq, &name, &indexType, &prefix); err != nil {
			return err
		}
		ti := index[[2]string{db, table}]
		if ti == nil {
			return nil
		}
		ti.shape = append(ti.shape, "i", index_, strconv.Itoa(nonUnique), strconv.Itoa(seq), name, indexType, strconv.FormatBool(prefix))
		if index_ == "PRIMARY" {
			ti.t.PrimaryKey = append(ti.t.PrimaryKey, name)
		}
		// Only an index that orders the whole column can walk it or range
		// it: B-tree, not on a prefix, not IGNORED (nor FULLTEXT, SPATIAL
		// or HASH).
		col, ok := columns[[3]string{db, table, name}]
		if seq != 1 || !ok || chunkKind(col.typ) == chunkNone || indexType != "BTREE" || prefix {
			return nil
		}
		r := 3 // any index
		switch {
		case index_ == "PRIMARY":
			r = 1
		case nonUnique == 0:
			r = 2
		}
		if old, seen := rank[ti]; !seen || r < old {
			rank[ti] = r
			ti.key = chunkKey{index: index_, column: name, typ: col.typ, charset: col.charset, nullable: col.nullable}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// addColumn adds a stored column to the table's data.
func (ti *tableInfo) addColumn(name, typ, colType string, notNull bool) {
	ti.t.Columns = append(ti.t.Columns, name)
	ti.t.Types = append(ti.t.Types, typ)
	ti.t.NotNull = append(ti.t.NotNull, notNull)
	ti.t.selects = append(ti.t.selects, dumpExpr(quote(name), typ, colType))
}

// queryRows runs q and calls fn for each row.
func queryRows(ctx context.Context, c *sql.Conn, q string, fn func(*sql.Rows) error) error {
	rows, err := c.QueryContext(ctx, q)
	if err != nil {
		return explain(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// chunkKey is the column a table's chunks are ranges of.
type chunkKey struct {
	index, column, typ, charset string
	nullable                    bool
}

const (
	chunkNone = iota
	chunkInt
	chunkKeyset
)

// chunkKind tells how a column of type typ can cut chunks: integer ranges
// from MIN to MAX, boundaries found by walking the index, or not at all.
func chunkKind(typ string) int {
	switch typ {
	case "tinyint", "smallint", "mediumint", "int", "bigint":
		return chunkInt
	case "char", "varchar", "binary", "varbinary", "decimal", "date", "datetime", "timestamp", "time", "year", "uuid", "inet6", "inet4":
		return chunkKeyset
	}
	return chunkNone
}

// planChunks cuts a table into ranges of its chunk key: an integer key
// evenly from MIN to MAX, any other by boundaries read from its index every
// chunkRows rows. NULLs of a nullable key go with the first chunk. A table
// without a usable key, or small, is one chunk, streamed.
func planChunks(ctx context.Context, c *sql.Conn, ti tableInfo, chunkRows int64) ([]string, error) {
	kind := chunkKind(ti.key.typ)
	if ti.key.column == "" || kind == chunkNone || ti.rowsEst <= chunkRows {
		return []string{""}, nil
	}
	if !strings.EqualFold(ti.t.Engine, "InnoDB") {
		// Outside the consistent snapshot, a row whose key changes
		// between two chunks' reads would be missed or copied twice;
		// one statement reads such a table under its table lock.
		return []string{""}, nil
	}
	var bounds []string
	var err error
	if kind == chunkInt {
		bounds, err = intBounds(ctx, c, ti, chunkRows)
	} else {
		bounds, err = keysetBounds(ctx, c, ti, chunkRows)
	}
	if err != nil || len(bounds) == 0 {
		return []string{""}, err
	}
	col := quote(ti.key.column)
	out := make([]string, 0, len(bounds)+1)
	first := fmt.Sprintf("%s < %s", col, bounds[0])
	if ti.key.nullable {
		first = fmt.Sprintf("(%s OR %s IS NULL)", first, col)
	}
	out = append(out, first)
	for i := 1; i < len(bounds); i++ {
		out = append(out, fmt.Sprintf("%s >= %s AND %s < %s", col, bounds[i-1], col, bounds[i]))
	}
	return append(out, fmt.Sprintf("%s >= %s", col, bounds[len(bounds)-1])), nil
}

// intBounds returns the boundaries between integer ranges of about
// chunkRows rows each, from the key's MIN and MAX.
func intBounds(ctx context.Context, c *sql.Conn, ti tableInfo, chunkRows int64) ([]string, error) {
	col := quote(ti.key.column)
	var lo, hi sql.NullString
	if err := c.QueryRowContext(ctx, fmt.Sprintf("SELECT MIN(%s), MAX(%s) FROM %s", col, col, qualified(ti.db, ti.t.Name))).Scan(&lo, &hi); err != nil {
		return nil, explain(err)
	}
	if !lo.Valid {
		return nil, nil
	}
	min, err1 := strconv.ParseInt(lo.String, 10, 64)
	max, err2 := strconv.ParseInt(hi.String, 10, 64)
	if err1 != nil || err2 != nil { // unsigned beyond int64: walk the index
		return keysetBounds(ctx, c, ti, chunkRows)
	}
	n := (ti.rowsEst + chunkRows - 1) / chunkRows
	step := (max - min + 1) / n
	if step < 1 {
		return nil, nil
	}
	var out []string
	for i := int64(1); i < n; i++ {
		out = append(out, strconv.FormatInt(min+i*step, 10))
	}
	return out, nil
}

// keysetBounds walks the key's index inside the snapshot and returns every
// chunkRows-th distinct value, as SQL literals. Each step reads chunkRows
// index entries from the previous boundary, so the walk reads the index
// once in all.
func keysetBounds(ctx context.Context, c *sql.Conn, ti tableInfo, chunkRows int64) ([]string, error) {
	col, table := quote(ti.key.column), qualified(ti.db, ti.t.Name)
	var out []string
	for {
		q := fmt.Sprintf("SELECT %s FROM %s WHERE %s IS NOT NULL ORDER BY %s LIMIT 1 OFFSET %d", col, table, col, col, chunkRows)
		if len(out) > 0 {
			q = fmt.Sprintf("SELECT %s FROM %s WHERE %s > %s ORDER BY %s LIMIT 1 OFFSET %d", col, table, col, out[len(out)-1], col, chunkRows-1)
		}
		var v []byte
		err := c.QueryRowContext(ctx, q).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return out, nil
		}
		if err != nil {
			return nil, explain(err)
		}
		out = append(out, keyLiteral(v, ti.key))
	}
}

// keyLiteral writes a key value as a literal that compares with the column
// as the column's own values do: numbers as they are, hex with the
// column's character set introducer for strings (so their collation
// applies), hex for binary strings, quoted text for the rest (dates, times,
// UUIDs are plain ASCII).
func keyLiteral(v []byte, k chunkKey) string {
	numeric := len(v) > 0 && strings.Trim(string(v), "0123456789.-") == ""
	switch {
	case numeric && (chunkKind(k.typ) == chunkInt || k.typ == "decimal" || k.typ == "year"):
		// Unquoted: compared as a number of the column's kind, exactly.
		return string(v)
	case k.typ == "binary" || k.typ == "varbinary":
		return "X'" + hex.EncodeToString(v) + "'"
	case k.charset != "":
		return "_" + k.charset + " X'" + hex.EncodeToString(v) + "'"
	}
	return "'" + strings.ReplaceAll(string(v), "'", "''") + "'"
}

package snapshot

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// dumpDatabases writes each database's CREATE DATABASE and objects, and
// adds the databases to the manifest.
func dumpDatabases(ctx context.Context, c *sql.Conn, sy *syncer, dir string, m *Manifest, tables []tableInfo) error {
	dbs := map[string]bool{}
	for _, ti := range tables {
		dbs[ti.db] = true
	}
	// Databases without tables still count.
	err := queryRows(ctx, c, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME", func(rows *sql.Rows) error {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		if !isSystemSchema(name) {
			dbs[name] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	var names []string
	for n := range dbs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		var n, create string
		if err := c.QueryRowContext(ctx, "SHOW CREATE DATABASE "+quote(name)).Scan(&n, &create); err != nil {
			return explain(err)
		}
		d := Database{Name: name, Schema: filepath.Join(fileName(name), "schema.sql")}
		sum, err := writeFile(sy, dir, d.Schema, create+";\n", 0o600)
		if err != nil {
			return err
		}
		m.Files[d.Schema] = sum
		objects, err := dumpObjects(ctx, c, name)
		if err != nil {
			return err
		}
		if len(objects) > 0 {
			d.Objects = filepath.Join(fileName(name), objectsFile)
			b, err := json.MarshalIndent(objects, "", "  ")
			if err != nil {
				return err
			}
			if m.Files[d.Objects], err = writeFile(sy, dir, d.Objects, string(b)+"\n", 0o600); err != nil {
				return err
			}
		}
		m.Databases = append(m.Databases, d)
	}
	return nil
}

// dumpTableSchema writes a table's (or sequence's) CREATE statement to
// <db>/<table>.schema.sql and returns the file's sha256.
func dumpTableSchema(ctx context.Context, c *sql.Conn, sy *syncer, dir string, ti tableInfo) (string, error) {
	// A sequence's CREATE SEQUENCE makes a working sequence by itself;
	// its CREATE TABLE … SEQUENCE=1 form would need its row first.
	show := "SHOW CREATE TABLE "
	if ti.t.Kind == KindSequence {
		show = "SHOW CREATE SEQUENCE "
	}
	var n, create string
	if err := c.QueryRowContext(ctx, show+qualified(ti.db, ti.t.Name)).Scan(&n, &create); err != nil {
		return "", fmt.Errorf("%s%s.%s: %w", show, ti.db, ti.t.Name, explain(err))
	}
	return writeFile(sy, dir, ti.schemaFile(), create+";\n", 0o600)
}

// UsersFile holds a snapshot's accounts, roles and grants, if saved; a
// database's objects are in objectsFile. Both are JSON, so that no name or
// routine body can break a statement apart.
const (
	UsersFile   = "users.json"
	objectsFile = "objects.json"
)

// Account is one account or role of UsersFile: the statement that creates
// it and the GRANT statements SHOW GRANTS gives for it.
type Account struct {
	User   string   `json:"user"`
	Host   string   `json:"host,omitempty"` // "" for a role
	Role   bool     `json:"role,omitempty"`
	Create string   `json:"create"`
	Grants []string `json:"grants"`
}

// dumpUsers writes every account and role (but the server's own
// mariadb.sys and PUBLIC) to UsersFile: CREATE ROLE, or CREATE USER with
// its authentication as SHOW CREATE USER gives it, and its grants. The
// file holds password hashes: only its owner may read it.
func dumpUsers(ctx context.Context, c *sql.Conn, sy *syncer, dir string, m *Manifest, log *slog.Logger) error {
	var accounts []Account
	err := queryRows(ctx, c, "SELECT User, Host, is_role FROM mysql.user ORDER BY is_role DESC, User, Host", func(rows *sql.Rows) error {
		var a Account
		var role string
		if err := rows.Scan(&a.User, &a.Host, &role); err != nil {
			return err
		}
		if a.Role = role == "Y"; a.Role {
			a.Host = ""
		}
		if a.User != "mariadb.sys" && a.User != "PUBLIC" {
			accounts = append(accounts, a)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading accounts (the snapshot user needs SELECT on the mysql database for snapshot.users): %w", err)
	}
	var saved []Account
	for _, a := range accounts {
		name := a.name()
		if a.Role {
			a.Create = "CREATE ROLE IF NOT EXISTS " + name
		} else if err := c.QueryRowContext(ctx, "SHOW CREATE USER "+name).Scan(&a.Create); err != nil {
			var me *mysql.MySQLError
			if errors.As(err, &me) && me.Number == 1133 {
				// In mysql.user but not in use: a host name under
				// skip-name-resolve, for one.
				log.Warn("account not saved: the server ignores it", "account", name, "error", me.Message)
				continue
			}
			return fmt.Errorf("SHOW CREATE USER %s: %w", name, explain(err))
		}
		err := queryRows(ctx, c, "SHOW GRANTS FOR "+name, func(rows *sql.Rows) error {
			var g string
			if err := rows.Scan(&g); err != nil {
				return err
			}
			a.Grants = append(a.Grants, g)
			return nil
		})
		if err != nil {
			return fmt.Errorf("SHOW GRANTS FOR %s: %w", name, err)
		}
		saved = append(saved, a)
	}
	b, err := json.MarshalIndent(saved, "", "  ")
	if err != nil {
		return err
	}
	m.Users, m.Accounts = UsersFile, len(saved)
	m.Files[UsersFile], err = writeFile(sy, dir, UsersFile, string(b)+"\n", 0o600)
	return err
}

// name is the account's name in SQL. Backticks quote it whatever the
// sql_mode (a backslash is not an escape in them).
func (a Account) name() string {
	if a.Role {
		return quote(a.User)
	}
	return quote(a.User) + "@" + quote(a.Host)
}

// SchemaObject is one entry of objectsFile: a routine, package, view,
// trigger or event, with the session settings it was created in, which
// SHOW CREATE gives beside it. They decide how its body is parsed and
// runs: sql_mode (ORACLE syntax, strictness, ANSI_QUOTES, …), the
// character set of its string literals (collation_connection), and an
// event's time zone (the one its STARTS and ENDS are written in).
// Snapshots before these were recorded hold bare statements.
type SchemaObject struct {
	Create              string `json:"create"`
	SQLMode             string `json:"sql_mode"` // for a view, the one SHOW CREATE VIEW printed it in
	CollationConnection string `json:"collation_connection"`
	TimeZone            string `json:"time_zone,omitempty"` // events only
}

// dumpObjects returns the routines, packages, views, triggers and events
// of a database, in an order that creates what a view needs (a function)
// before it; Load also retries a view that names another view created
// after it. They are read in utf8mb4 (the server converts a body written
// in another character set) and loaded in utf8mb4, with the
// collation_connection they were created in.
func dumpObjects(ctx context.Context, c *sql.Conn, db string) (out []SchemaObject, err error) {
	if _, err := c.ExecContext(ctx, "SET SESSION character_set_results = utf8mb4"); err != nil {
		return nil, explain(err)
	}
	defer func() {
		// The connection goes on to read rows, in their own bytes.
		if _, rerr := c.ExecContext(context.WithoutCancel(ctx), "SET SESSION character_set_results = binary"); rerr != nil && err == nil {
			out, err = nil, explain(rerr)
		}
	}()
	// A view has no sql_mode of its own: SHOW CREATE VIEW prints it in
	// this session's, to be read back in it.
	var mode string
	if err := c.QueryRowContext(ctx, "SELECT @@session.sql_mode").Scan(&mode); err != nil {
		return nil, explain(err)
	}
	type kind struct{ list, show string }
	// The database's name compared with and without case: the first
	// lets the server read only that database's definitions, the second
	// keeps out those of another database whose name differs only in case
	// (lower_case_table_names=0).
	const routines = "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND BINARY ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = '%s' ORDER BY ROUTINE_NAME"
	kinds := []kind{
		{fmt.Sprintf(routines, "PACKAGE"), "SHOW CREATE PACKAGE %s"},
		{fmt.Sprintf(routines, "PACKAGE BODY"), "SHOW CREATE PACKAGE BODY %s"},
		{fmt.Sprintf(routines, "PROCEDURE"), "SHOW CREATE PROCEDURE %s"},
		{fmt.Sprintf(routines, "FUNCTION"), "SHOW CREATE FUNCTION %s"},
		{"SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND BINARY TABLE_SCHEMA = ? ORDER BY TABLE_NAME", "SHOW CREATE VIEW %s"},
		{"SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND BINARY TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME", "SHOW CREATE TRIGGER %s"},
		{"SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? AND BINARY EVENT_SCHEMA = ? ORDER BY EVENT_NAME", "SHOW CREATE EVENT %s"},
	}
	for _, k := range kinds {
		var names []string
		rows, err := c.QueryContext(ctx, k.list, db, db)
		if err != nil {
			return nil, explain(err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return nil, err
			}
			names = append(names, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, explain(err)
		}
		for _, n := range names {
			q := fmt.Sprintf(k.show, qualified(db, n))
			cols, err := showCreateColumns(ctx, c, q)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", q, explain(err))
			}
			o := SchemaObject{Create: cols.create(), SQLMode: mode, CollationConnection: cols["collation_connection"], TimeZone: cols["time_zone"]}
			if m, ok := cols["sql_mode"]; ok {
				o.SQLMode = m
			}
			if o.Create == "" {
				return nil, fmt.Errorf("%s: no CREATE statement among the columns (is SHOW VIEW, TRIGGER or EVENT missing?)", q)
			}
			out = append(out, o)
		}
	}
	return out, nil
}

// showColumns is the row of a SHOW CREATE, by column name.
type showColumns map[string]string

// create returns the statement: the column whose name starts with
// "Create " (not a character set or collation column), or "SQL Original
// Statement" for triggers.
func (s showColumns) create() string {
	for name, v := range s {
		if (strings.HasPrefix(name, "Create ") || name == "SQL Original Statement") && v != "" {
			return v
		}
	}
	return ""
}

// showCreateColumns runs a SHOW CREATE and returns its row.
func showCreateColumns(ctx context.Context, c *sql.Conn, q string) (showColumns, error) {
	r, err := c.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cols, err := r.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if !r.Next() {
		if err := r.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("no row")
	}
	if err := r.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := showColumns{}
	for i, name := range cols {
		out[name] = vals[i].String
	}
	return out, nil
}

package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// dumpSchema writes CREATE DATABASE, CREATE TABLE and the other objects.
func dumpSchema(ctx context.Context, c *sql.Conn, sy *syncer, dir string, m *Manifest, tables []tableInfo) error {
	dbs := map[string]bool{}
	for _, ti := range tables {
		dbs[ti.db] = true
	}
	// Databases without tables still count.
	rows, err := c.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
	if err != nil {
		return explain(err)
	}
	for rows.Next() {
		var name string
		rows.Scan(&name)
		if !systemSchemas[strings.ToLower(name)] {
			dbs[name] = true
		}
	}
	rows.Close()
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
		d := Database{Name: name, Schema: filepath.Join(name, "schema.sql")}
		if err := writeFile(sy, dir, d.Schema, create+";\n", m); err != nil {
			return err
		}
		objects, err := dumpObjects(ctx, c, name)
		if err != nil {
			return err
		}
		if objects != "" {
			d.Objects = filepath.Join(name, "objects.sql")
			if err := writeFile(sy, dir, d.Objects, objects, m); err != nil {
				return err
			}
		}
		m.Databases = append(m.Databases, d)
	}
	for _, ti := range tables {
		var n, create string
		if err := c.QueryRowContext(ctx, "SHOW CREATE TABLE "+qualified(ti.db, ti.t.Name)).Scan(&n, &create); err != nil {
			return explain(err)
		}
		if err := writeFile(sy, dir, filepath.Join(ti.db, ti.t.Name+".schema.sql"), create+";\n", m); err != nil {
			return err
		}
	}
	return nil
}

// UsersFile holds a snapshot's accounts, roles and grants, if saved.
const UsersFile = "users.sql"

// dumpUsers writes every account and role (but the server's own
// mariadb.sys and PUBLIC) with its grants to UsersFile: CREATE ROLE or
// CREATE USER (with its authentication as SHOW CREATE USER gives it), then
// its GRANTs, statements separated by lines "$$".
func dumpUsers(ctx context.Context, c *sql.Conn, sy *syncer, dir string, m *Manifest, log *slog.Logger) error {
	type account struct {
		user, host string
		role       bool
	}
	var accounts []account
	err := queryRows(ctx, c, "SELECT User, Host, is_role FROM mysql.user ORDER BY is_role DESC, User, Host", func(rows *sql.Rows) error {
		var a account
		var role string
		if err := rows.Scan(&a.user, &a.host, &role); err != nil {
			return err
		}
		a.role = role == "Y"
		if a.user != "mariadb.sys" && a.user != "PUBLIC" {
			accounts = append(accounts, a)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading accounts (the snapshot user needs SELECT on the mysql database for snapshot.users): %w", err)
	}
	// Every account and role first, then the grants, which may name
	// roles and users that sort after the grantee.
	var creates, grants strings.Builder
	skipped := 0
	for _, a := range accounts {
		name := quote(a.user) // backticks: no backslash escapes, whatever the sql_mode
		if a.role {
			creates.WriteString("CREATE ROLE IF NOT EXISTS " + name + "\n$$\n")
		} else {
			name += "@" + quote(a.host)
			var create string
			if err := c.QueryRowContext(ctx, "SHOW CREATE USER "+name).Scan(&create); err != nil {
				var me *mysql.MySQLError
				if errors.As(err, &me) && me.Number == 1133 {
					// In mysql.user but not in use: a host name under
					// skip-name-resolve, for one.
					log.Warn("account not saved: the server ignores it", "account", name, "error", me.Message)
					skipped++
					continue
				}
				return fmt.Errorf("SHOW CREATE USER %s: %w", name, explain(err))
			}
			if rest, ok := strings.CutPrefix(create, "CREATE USER "); ok {
				create = "CREATE USER IF NOT EXISTS " + rest
			}
			creates.WriteString(create + "\n$$\n")
		}
		err := queryRows(ctx, c, "SHOW GRANTS FOR "+name, func(rows *sql.Rows) error {
			var g string
			if err := rows.Scan(&g); err != nil {
				return err
			}
			grants.WriteString(g + "\n$$\n")
			return nil
		})
		if err != nil {
			return fmt.Errorf("SHOW GRANTS FOR %s: %w", name, err)
		}
	}
	m.Users = UsersFile
	m.Accounts = len(accounts) - skipped
	return writeFile(sy, dir, UsersFile, creates.String()+grants.String(), m)
}

// dumpObjects returns the views, routines, triggers and events of a
// database as SQL separated by lines with a single "$$" delimiter marker.
func dumpObjects(ctx context.Context, c *sql.Conn, db string) (string, error) {
	var b strings.Builder
	type obj struct{ kind, list, show string }
	kinds := []obj{
		{"VIEW", "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", "SHOW CREATE VIEW %s"},
		{"PROCEDURE", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = 'PROCEDURE' ORDER BY ROUTINE_NAME", "SHOW CREATE PROCEDURE %s"},
		{"FUNCTION", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = 'FUNCTION' ORDER BY ROUTINE_NAME", "SHOW CREATE FUNCTION %s"},
		{"TRIGGER", "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME", "SHOW CREATE TRIGGER %s"},
		{"EVENT", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME", "SHOW CREATE EVENT %s"},
	}
	for _, k := range kinds {
		rows, err := c.QueryContext(ctx, k.list, db)
		if err != nil {
			return "", explain(err)
		}
		var names []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		rows.Close()
		for _, n := range names {
			r, err := c.QueryContext(ctx, fmt.Sprintf(k.show, qualified(db, n)))
			if err != nil {
				return "", explain(err)
			}
			cols, _ := r.Columns()
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if r.Next() {
				r.Scan(ptrs...)
			}
			r.Close()
			// The statement is the column whose name starts with "Create "
			// but is not a charset/collation column.
			for i, name := range cols {
				if strings.HasPrefix(name, "Create ") || name == "SQL Original Statement" {
					if vals[i].Valid && vals[i].String != "" {
						b.WriteString(vals[i].String)
						b.WriteString("\n$$\n")
						break
					}
				}
			}
		}
	}
	return b.String(), nil
}

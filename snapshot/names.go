package snapshot

import (
	"fmt"
	"path/filepath"
	"strings"

	understudy "github.com/understudy-db/understudy"
)

// fileName is how a database or table name appears in a snapshot's paths:
// ASCII letters, digits, '_', '-' and '$', and every non-ASCII character,
// as they are; any other byte (the '/' and '.' of a path, a space, a
// control character) and '@' itself as '@' and two hex digits, as MariaDB
// names its own files (`a/b` is a@2fb). So no name climbs out of its
// directory (`../../x`), names another table's file (`t.00000`) or a
// file of the snapshot (a database named `users.json`). A name of 64
// characters stays under 255 bytes with its suffix.
func fileName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '$', c >= 0x80:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "@%02x", c)
		}
	}
	return b.String()
}

// tableFile is the path of one of a table's files: <db>/<table><suffix>.
func tableFile(db, table, suffix string) string {
	return filepath.Join(fileName(db), fileName(table)+suffix)
}

// schemaFile is the path of the table's CREATE statement.
func (ti tableInfo) schemaFile() string { return tableFile(ti.db, ti.t.Name, ".schema.sql") }

// checkPaths makes sure every file a manifest names lies inside the
// snapshot's directory: a damaged manifest must not make a restore read,
// or a fetch write, anywhere else.
func (m *Manifest) checkPaths() error {
	check := func(p string) error {
		if p != "" && !filepath.IsLocal(p) {
			return fmt.Errorf("%w: the manifest names the file %q, outside the snapshot's directory", understudy.ErrCorrupt, p)
		}
		return nil
	}
	paths := []string{m.Users}
	for p := range m.Files {
		paths = append(paths, p)
	}
	for _, d := range m.Databases {
		paths = append(paths, d.Schema, d.Objects)
		for _, t := range d.Tables {
			paths = append(paths, t.Schema)
			for _, c := range t.Chunks {
				paths = append(paths, c.File)
			}
		}
	}
	for _, p := range paths {
		if err := check(p); err != nil {
			return err
		}
	}
	return nil
}

package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEventOnReplica(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY STARTS '2026-11-26 10:00:00' ON COMPLETION NOT PRESERVE ENABLE DO DELETE FROM t",
			"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY STARTS '2026-11-26 10:00:00' ON COMPLETION NOT PRESERVE DISABLE ON SLAVE DO DELETE FROM t"},
		{"CREATE DEFINER=`a b`@`%` EVENT `x ON COMPLETION PRESERVE ENABLE` ON SCHEDULE AT '2030-01-01 00:00:00' ON COMPLETION PRESERVE ENABLE COMMENT 'it''s ON COMPLETION PRESERVE ENABLE' DO SELECT 'ENABLE'",
			"CREATE DEFINER=`a b`@`%` EVENT `x ON COMPLETION PRESERVE ENABLE` ON SCHEDULE AT '2030-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE ON SLAVE COMMENT 'it''s ON COMPLETION PRESERVE ENABLE' DO SELECT 'ENABLE'"},
		{"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY '1:30' HOUR_MINUTE STARTS '2026-11-26 10:00:00' ON COMPLETION NOT PRESERVE DISABLE DO SELECT 1",
			"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY '1:30' HOUR_MINUTE STARTS '2026-11-26 10:00:00' ON COMPLETION NOT PRESERVE DISABLE DO SELECT 1"},
		// ANSI_QUOTES names, where a backslash is a character.
		{`CREATE DEFINER="a\"@"%" EVENT "e" ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE ENABLE DO SELECT 1`,
			`CREATE DEFINER="a\"@"%" EVENT "e" ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE DISABLE ON SLAVE DO SELECT 1`},
		// A string with a backslash-escaped quote in the comment.
		{"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE ENABLE COMMENT 'a \\' DO x' DO SELECT 1",
			"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE DISABLE ON SLAVE COMMENT 'a \\' DO x' DO SELECT 1"},
		{"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE DISABLE ON SLAVE DO SELECT 1",
			"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE DISABLE ON SLAVE DO SELECT 1"},
	} {
		got, name, enabled, isEvent, ok := eventOnReplica(c.in)
		if !isEvent || !ok || got != c.want || enabled != (got != c.in) || (name != "e" && name != "x ON COMPLETION PRESERVE ENABLE") {
			t.Errorf("eventOnReplica(%q)\n= %q (name %q, enabled %v, event %v, ok %v)\nwant %q", c.in, got, name, enabled, isEvent, ok, c.want)
		}
	}
	for _, s := range []string{
		"CREATE DEFINER=`root`@`localhost` PROCEDURE `p`() SELECT 'EVENT ON COMPLETION PRESERVE ENABLE'",
		"CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1",
		"CREATE DEFINER=`root`@`localhost` TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET NEW.a = 'EVENT'",
	} {
		if got, _, _, isEvent, ok := eventOnReplica(s); isEvent || !ok || got != s {
			t.Errorf("eventOnReplica(%q) = %q, %v, %v", s, got, isEvent, ok)
		}
	}
	if _, _, _, isEvent, ok := eventOnReplica("CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY DO SELECT 1"); !isEvent || ok {
		t.Errorf("an event without ON COMPLETION: event %v, ok %v", isEvent, ok)
	}
}

func TestUnquoteName(t *testing.T) {
	for q, want := range map[string]string{"`e`": "e", "`a``b`": "a`b", "`x`y`": "x`y", `"a""b"`: `a"b`, "plain": "plain", "`": "`"} {
		if got := unquoteName(q); got != want {
			t.Errorf("unquoteName(%q) = %q, want %q", q, got, want)
		}
	}
}

// TestReadAllObjectsEarly: an event that cannot be made DISABLE ON SLAVE
// is found when the objects are read, which Load does before any table.
func TestReadAllObjectsEarly(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	body := []byte(`[{"create": "CREATE DEFINER=` + "`root`@`%`" + ` EVENT e ON SCHEDULE EVERY 1 DAY DO SELECT 1", "sql_mode": "", "collation_connection": "utf8mb4_general_ci", "time_zone": "SYSTEM"}]`)
	if err := os.WriteFile(filepath.Join(dir, "d", objectsFile), body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	m := &Manifest{Files: map[string]string{"d/" + objectsFile: hex.EncodeToString(sum[:])}, Databases: []Database{{Name: "d", Objects: "d/" + objectsFile}}}
	dbs := []*Database{&m.Databases[0]}
	if objs, err := readAllObjects(dir, m, dbs, false); err != nil || len(objs) != 1 {
		t.Fatalf("for a copy: %v, %d objects", err, len(objs))
	}
	if _, err := readAllObjects(dir, m, dbs, true); err == nil || !strings.Contains(err.Error(), "cannot create the event d.e DISABLE ON SLAVE") {
		t.Fatalf("for a replica: %v", err)
	}
}

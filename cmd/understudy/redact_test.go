package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEventsRedactPasswords: `understudy events` shows account statements
// with their secrets replaced by '<secret>', in text and in --json.
func TestEventsRedactPasswords(t *testing.T) {
	p := startPrimary(t, 1, 0)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9710})
	secrets := []string{"Pw-create-1", "Pw-alter-2", "Pw-grant-3", "Pw-set-4", "Pw-via-5", "Pw-it's-6"}
	p.Exec(t, "CREATE USER leak@'%' IDENTIFIED BY 'Pw-create-1'")
	p.Exec(t, "ALTER USER leak@'%' IDENTIFIED BY 'Pw-alter-2'")
	p.Exec(t, "GRANT SELECT ON *.* TO leak@'%' IDENTIFIED BY 'Pw-grant-3'")
	p.Exec(t, "SET PASSWORD FOR leak@'%' = PASSWORD('Pw-set-4')")
	p.Exec(t, "ALTER USER leak@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('Pw-via-5')")
	p.Exec(t, `CREATE USER leak2@'%' IDENTIFIED BY 'Pw-it\'s-6'`)
	stop := startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 20*time.Second)
	stop()
	for _, args := range [][]string{
		{"events", "--config", cfg, "--source", "db"},
		{"events", "--config", cfg, "--source", "db", "--json"},
		{"events", "--config", cfg, "--source", "db", "--grep", "leak"},
	} {
		code, out, e := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v exited %d: %s", args, code, e)
		}
		t.Logf("%v:\n%s", args, out)
		for _, s := range secrets {
			if strings.Contains(out+e, s) || strings.Contains(out+e, strings.ReplaceAll(s, "'", `\'`)) {
				t.Errorf("%v shows the password %q", args, s)
			}
		}
		if n := strings.Count(out, "<secret>"); n < len(secrets) {
			t.Errorf("%v: %d redacted secrets, want %d", args, n, len(secrets))
		}
	}
}

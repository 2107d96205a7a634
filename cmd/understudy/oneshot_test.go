package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestUntilCaughtUpGivesUp: a one-shot catch-up exits non-zero, within
// seconds and with the one-line error, when the primary refuses for a cause
// no retry fixes. (`run` as a daemon keeps retrying: TestBadInput.)
func TestUntilCaughtUpGivesUp(t *testing.T) {
	p := startPrimary(t, 1, 0)
	p.CreateUser(t, "nogrant", "pw")
	nb := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	nb.CreateUser(t, replUser, replPassword, "REPLICATION SLAVE ON *.*")
	for _, tc := range []struct {
		name     string
		serverID uint32
		edit     func(string) string
		want     string
		p        *mariadbtest.Server // default p
	}{
		{"wrong password", 9500, func(s string) string {
			return strings.Replace(s, "password: "+replPassword, "password: wrong", 1)
		}, "wrong user or password", nil},
		{"missing grant", 9500, func(s string) string {
			s = strings.Replace(s, "user: "+replUser, "user: nogrant", 1)
			return strings.Replace(s, "password: "+replPassword, "password: pw", 1)
		}, "GRANT REPLICATION SLAVE ON *.* TO 'nogrant'", nil},
		{"server_id of the primary", 1, func(s string) string { return s }, "the same as understudy's server_id", nil},
		{"binlog disabled", 9500, func(s string) string { return s }, "binary logging is disabled", nb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			primary := p
			if tc.p != nil {
				primary = tc.p
			}
			cfg := writeConfig(t, dir, testSource{name: "db", p: primary, serverID: tc.serverID})
			b, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfg, []byte(tc.edit(string(b))), 0o600); err != nil {
				t.Fatal(err)
			}
			var so, se bytes.Buffer
			done := make(chan int, 1)
			start := time.Now()
			go func() { done <- run([]string{"run", "--until-caught-up", "--config", cfg}, &so, &se) }()
			select {
			case code := <-done:
				if code != exitError {
					t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitError, se.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("run --until-caught-up still running after 20s")
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("gave up after %s, want within seconds", d)
			}
			lines := strings.Split(strings.TrimSpace(se.String()), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "understudy run: source db: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("last line of stderr is %q, want the error with %q naming source db", last, tc.want)
			}
		})
	}
}

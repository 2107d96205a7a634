package config

import (
	"strings"
	"testing"
)

const good = `
archive:
  dir: ./archive
  max_file_size: 64MiB
sources:
  - name: db1
    host: 127.0.0.1
    port: 3306
    user: repl
    password_env: DB1_PW
    server_id: 9001
  - name: db2
    host: 127.0.0.1
    port: 3307
    user: repl
    password: secret
    server_id: 9002
    semi_sync: true
    heartbeat: 2s
`

func TestParseGood(t *testing.T) {
	c, err := Parse("/etc/understudy.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(c.Sources), 2; got != want {
		t.Fatalf("sources=%d, want %d", got, want)
	}
	if got, want := int64(c.Archive.MaxFileSize), int64(64<<20); got != want {
		t.Fatalf("max_file_size=%d, want %d", got, want)
	}
	if got, want := c.SourceDir("db1"), "/etc/archive/db1"; got != want {
		t.Fatalf("SourceDir=%q, want %q", got, want)
	}
	t.Setenv("DB1_PW", "pw1")
	s, err := c.Resolve(&c.Sources[0])
	if err != nil || s.Password != "pw1" {
		t.Fatalf("Resolve: %v %q", err, s.Password)
	}
	if got, want := c.HTTPListen(), DefaultHTTPListen; got != want {
		t.Fatalf("HTTPListen=%q, want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", strings.Replace(good, "semi_sync: true", "semisync: true", 1), `line 18: unknown key "semisync" in a source`},
		{"unknown top", "archiv:\n  dir: x\n", `unknown key "archiv" in the top level`},
		{"missing dir", strings.Replace(good, "dir: ./archive", "sync_interval: 1s", 1), "archive.dir: required"},
		{"missing server_id", strings.Replace(good, "    server_id: 9002\n", "", 1), "sources[1].server_id: required"},
		{"bad port", strings.Replace(good, "port: 3307", "port: abc", 1), `invalid value "abc" (want a whole number)`},
		{"bad duration", strings.Replace(good, "heartbeat: 2s", "heartbeat: often", 1), "want a duration"},
		{"dup server_id", strings.Replace(good, "9002", "9001", 1), "sources[1].server_id: 9001 is also the server_id of sources[0] (db1)"},
		{"dup name", strings.Replace(good, "name: db2", "name: db1", 1), `sources[1].name: "db1" is also the name of sources[0]`},
		{"two passwords", strings.Replace(good, "password: secret", "password: secret\n    password_file: /x", 1), "exactly one of password"},
		{"no password", strings.Replace(good, "    password: secret\n", "", 1), "exactly one of password"},
		{"bad size", strings.Replace(good, "64MiB", "lots", 1), `invalid size "lots"`},
		{"empty", "", "file is empty"},
	}
	for _, tc := range cases {
		_, err := Parse("u.yaml", []byte(tc.yaml))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "u.yaml: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to name the file and contain %q", tc.name, err, tc.want)
		}
	}
}

func TestResolveMissingEnv(t *testing.T) {
	c, err := Parse("u.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Resolve(&c.Sources[0])
	if err == nil || !strings.Contains(err.Error(), "DB1_PW (password_env) is not set") {
		t.Fatalf("err=%v", err)
	}
}

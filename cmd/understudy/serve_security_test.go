package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestServeRefusesEmptyPassword: run and serve both refuse to start a
// binlog server without a password, with one line naming the source and
// the key.
func TestServeRefusesEmptyPassword(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty-pw"), []byte("\n"), 0o600)
	t.Setenv("UNDERSTUDY_TEST_EMPTY_PW", "")
	os.Unsetenv("UNDERSTUDY_TEST_UNSET_PW")
	for _, tc := range []struct{ key, want string }{
		{"password_env: UNDERSTUDY_TEST_EMPTY_PW", "serve.password_env: environment variable UNDERSTUDY_TEST_EMPTY_PW is empty"},
		{"password_env: UNDERSTUDY_TEST_UNSET_PW", "serve.password_env: environment variable UNDERSTUDY_TEST_UNSET_PW is not set"},
		{"password_file: empty-pw", "serve.password_file: " + filepath.Join(dir, "empty-pw") + " is empty"},
	} {
		cfg := writeServeConfig(t, dir, tc.key, "")
		for _, cmd := range [][]string{{"serve", "--config", cfg, "--source", "db"}, {"run", "--config", cfg}} {
			code, _, stderr := runCmd(t, cmd...)
			line := strings.TrimSpace(stderr)
			if code != exitError || strings.Count(line, "\n") != 0 || !strings.Contains(line, "source db") || !strings.Contains(line, tc.want) {
				t.Errorf("%s with %s: exit %d, stderr %q; want exit %d and one line with %q", cmd[0], tc.key, code, stderr, exitError, tc.want)
			}
		}
	}
}

// TestServeTLSRequiredOption: serve.tls requires TLS unless
// serve.tls.required is false.
func TestServeTLSRequiredOption(t *testing.T) {
	certs := t.TempDir()
	ca, caKey := mariadbtest.WriteCert(t, certs, "ca", nil, nil)
	mariadbtest.WriteCert(t, certs, "server", ca, caKey)
	tlsBlock := fmt.Sprintf("      tls:\n        cert: %s\n        key: %s\n", filepath.Join(certs, "server.pem"), filepath.Join(certs, "server.key"))
	for _, tc := range []struct {
		extra        string
		wantOptional bool
	}{{"", false}, {"        required: true\n", false}, {"        required: false\n", true}} {
		path := writeServeConfig(t, t.TempDir(), "password: pw", tlsBlock+tc.extra)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := cfg.Source("db")
		bs, err := newBinlogServer(cfg, s, understudy.StopPoint{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if bs.cfg.TLS == nil || bs.cfg.TLSOptional != tc.wantOptional {
			t.Errorf("tls %q: TLS set %v, TLSOptional %v; want set, %v", tc.extra, bs.cfg.TLS != nil, bs.cfg.TLSOptional, tc.wantOptional)
		}
	}
}

// writeServeConfig writes a config with source db served with the given
// password key and extra serve lines; nothing is started.
func writeServeConfig(t *testing.T, dir, passwordKey, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "understudy.yaml")
	err := os.WriteFile(path, []byte(fmt.Sprintf(`archive:
  dir: %s
http:
  listen: "off"
sources:
  - name: db
    host: 127.0.0.1
    port: 1
    user: understudy
    password: pw
    server_id: 9001
    serve:
      listen: 127.0.0.1:0
      user: replica
      %s
%s`, filepath.Join(dir, "archive"), passwordKey, extra)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/internal/s3test"
)

// TestRunLease: with a store, `run` holds each source's lease in it. A
// second `run` for the same source (from another directory, as on
// another host) is refused at once, in one line naming the holder, with
// the exit status of a locked archive; once the first stops, it archives.
func TestRunLease(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	t.Setenv("TEST_S3_ACCESS", srv.AccessKey)
	t.Setenv("TEST_S3_SECRET", srv.SecretKey)
	p := startPrimary(t, 1, 1)
	p.Exec(t, "CREATE DATABASE app")
	withStore := func(dir string) string {
		cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001})
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		block := fmt.Sprintf("storage:\n  s3:\n    bucket: %s\n    prefix: site/\n    endpoint: %s\n    region: %s\n    access_key_env: TEST_S3_ACCESS\n    secret_key_env: TEST_S3_SECRET\n    path_style: true\n",
			srv.Bucket, srv.Endpoint, s3test.Region)
		if err := os.WriteFile(cfg, append([]byte(block), b...), 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first, second := withStore(t.TempDir()), withStore(t.TempDir())

	stop := startRun(t, first)
	mariadbtest.Eventually(t, "the lease object", 30*time.Second, func() bool {
		_, err := os.Stat(srv.ObjectPath("site/db/lease"))
		return err == nil
	})
	var so, se strings.Builder
	began := time.Now()
	code := run([]string{"run", "--config", second, "--until-caught-up"}, &so, &se)
	if code != exitLocked || !strings.Contains(se.String(), "is held by understudy") || !strings.Contains(se.String(), "source db") || strings.Count(strings.TrimSpace(se.String()), "\n") != 0 {
		t.Fatalf("a second run for the same source: exit %d, %q; want %d and one line naming the holder", code, se.String(), exitLocked)
	}
	if time.Since(began) > 10*time.Second {
		t.Fatalf("the refusal took %s", time.Since(began))
	}
	t.Log(se.String())
	if files, _ := filepath.Glob(filepath.Join(filepath.Dir(second), "archive", "db", "binlog.*")); len(files) != 0 {
		t.Fatalf("the refused run archived %v", files)
	}

	// The first stops and releases its lease: the second archives.
	stop()
	so.Reset()
	se.Reset()
	if code := run([]string{"run", "--config", second, "--until-caught-up"}, &so, &se); code != exitOK {
		t.Fatalf("run after the first released its lease: exit %d: %s", code, se.String())
	}
	waitArchived(t, filepath.Join(filepath.Dir(second), "archive", "db"), p, 30*time.Second)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/internal/s3test"
	"github.com/understudy-db/understudy/remote"
	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/s3"
)

// withStore writes a config for src in dir whose storage block is the
// bucket of srv, with the keys given (recipients, identity: either may be
// empty).
func withStore(t *testing.T, dir string, srv *s3test.Server, recipients, identity string, src testSource) string {
	t.Helper()
	cfg := writeConfig(t, dir, src)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	block := fmt.Sprintf("storage:\n  upload_interval: 200ms\n  s3:\n    bucket: %s\n    prefix: site/\n    endpoint: %s\n    region: %s\n    access_key_env: TEST_S3_ACCESS\n    secret_key_env: TEST_S3_SECRET\n    path_style: true\n",
		srv.Bucket, srv.Endpoint, s3test.Region)
	if recipients != "" || identity != "" {
		block += "  encryption:\n"
		if recipients != "" {
			block += "    recipients_file: " + recipients + "\n"
		}
		if identity != "" {
			block += "    identity_file: " + identity + "\n"
		}
	}
	if err := os.WriteFile(cfg, append([]byte(block), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// storeWithKeys starts a store with the environment of withStore's
// configs, and makes a key pair with `understudy keygen`: the recipients
// and the identity files.
func storeWithKeys(t *testing.T) (srv *s3test.Server, pub, key string) {
	t.Helper()
	srv = s3test.Start(t, s3test.Options{})
	t.Setenv("TEST_S3_ACCESS", srv.AccessKey)
	t.Setenv("TEST_S3_SECRET", srv.SecretKey)
	t.Setenv("UNDERSTUDY_TARGET_PASSWORD", "")
	keys := t.TempDir()
	if code, _, se := runCmd(t, "keygen", "--dir", keys); code != exitOK {
		t.Fatalf("keygen: %d %s", code, se)
	}
	return srv, filepath.Join(keys, storage.RecipientsFileName), filepath.Join(keys, storage.IdentityFileName)
}

// TestStoreEndToEnd is issue 13's user story. A host that holds only the
// public key runs `understudy run` with an S3 store under a write load,
// takes a snapshot, and is killed with SIGKILL three times on the way. Its
// local archive directory is then deleted. A new host with the config and
// the identity reads everything from the bucket alone: info, snapshots,
// events, binlog export, verify --remote, and a restore onto a freshly
// installed server that equals the primary by checksums. A marker string
// written to the primary appears nowhere in the bucket, and a wrong key
// gives one line.
func TestStoreEndToEnd(t *testing.T) {
	srv, pub, key := storeWithKeys(t)

	p := startPrimary(t, 1, 5)
	const marker = "MARKER-d41c-never-in-plaintext"
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.secret (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100))")
	hostA := t.TempDir()
	cfgA := withStore(t, hostA, srv, pub, "", testSource{name: "db", p: p, serverID: 9300})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); workload(ctx, t, p, "app", 13) }()
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			p.Exec(t, fmt.Sprintf("INSERT INTO app.secret (v) VALUES ('%s-%d')", marker, i))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	pr := startProc(t, cfgA)
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(1500+rng.Intn(1500)) * time.Millisecond)
		if i == 1 {
			if code, _, se := runCmd(t, "snapshot", "--config", cfgA, "--source", "db"); code != exitOK {
				t.Fatalf("snapshot: %d %s", code, se)
			}
		}
		pr.kill9()
		// The host is certainly gone: its lease may be taken at once
		// (docs/storage.md).
		os.Remove(srv.ObjectPath("site/db/lease"))
		pr = startProc(t, cfgA)
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	want, err := understudy.ParsePosition(p.GTIDBinlogPos(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s3.New(srv.Settings("site/"))
	if err != nil {
		t.Fatal(err)
	}
	mariadbtest.Eventually(t, "the store at the primary's position "+want.String(), 60*time.Second, func() bool {
		v, err := remote.OpenView(context.Background(), remote.Store{Plain: b}, "db")
		return err == nil && v.Position().ContainsPosition(want)
	})
	mariadbtest.Eventually(t, "the snapshot in the store", 30*time.Second, func() bool {
		l, err := remote.ListSnapshots(context.Background(), remote.Store{Plain: b}, "db")
		return err == nil && len(l) == 1
	})
	pr.stop(t)
	if err := os.RemoveAll(filepath.Join(hostA, "archive")); err != nil {
		t.Fatal(err)
	}

	// Nothing of the rows in the bucket.
	var objects int
	filepath.Walk(filepath.Join(srv.Root, srv.Bucket), func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			objects++
			if data, _ := os.ReadFile(path); bytes.Contains(data, []byte(marker)) {
				t.Errorf("the marker is in plaintext in %s", path)
			}
		}
		return nil
	})
	t.Logf("%d objects in the bucket, none with the marker", objects)

	// A new host: the config and the identity, nothing else.
	hostB := t.TempDir()
	serveAddr := freeAddr(t)
	cfgB := withStore(t, hostB, srv, pub, key, testSource{name: "db", p: p, serverID: 9301, serve: serveAddr})
	code, out, se := runCmd(t, "info", "--config", cfgB, "--json")
	if code != exitOK {
		t.Fatalf("info: %d %s", code, se)
	}
	var infos []sourceInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 || infos[0].Store == nil || !infos[0].Store.Read {
		t.Fatalf("info from the store: %v %s", err, out)
	}
	if got, _ := understudy.ParsePosition(infos[0].Position); !got.ContainsPosition(want) || len(infos[0].Snapshots) != 1 {
		t.Fatalf("info from the store: position %s, %d snapshots; want %s and 1", infos[0].Position, len(infos[0].Snapshots), want)
	}
	if code, out, se = runCmd(t, "snapshots", "--config", cfgB, "--source", "db"); code != exitOK || strings.Count(out, "\n") != 2 {
		t.Fatalf("snapshots: %d %s %s", code, out, se)
	}
	if code, out, se = runCmd(t, "events", "--config", cfgB, "--source", "db", "--json"); code != exitOK || !strings.Contains(out, "secret") {
		t.Fatalf("events: %d %.300s %s", code, out, se)
	}
	exp := t.TempDir()
	if code, out, se = runCmd(t, "binlog", "export", "--config", cfgB, "--source", "db", "--dir", exp, "--until-gtid", want.String()); code != exitOK {
		t.Fatalf("binlog export: %d %s %s", code, out, se)
	}
	if code, out, se = runCmd(t, "verify", "--config", cfgB, "--source", "db", "--remote"); code != exitOK || !strings.Contains(out, "store: ") {
		t.Fatalf("verify --remote: %d %s %s", code, out, se)
	}
	t.Log(out)

	target := mariadbtest.Start(t, mariadbtest.Options{Stock: true, ServerID: 60})
	code, out, se = runCmd(t, "restore", "--config", cfgB, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port), "--until-gtid", want.String(), "--threads", "2")
	if code != exitOK {
		t.Fatalf("restore from the bucket alone: %d %s %s", code, out, se)
	}
	t.Log(out)
	sameChecksums(t, p, target, "app")

	// A replica from scratch, fed by the binlog server from the bucket.
	serveInProcess(t, cfgB, "--listen", serveAddr)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 62})
	startReplicaOf(t, r, "db", serveAddr, "")
	waitReplica(t, r, "db", want.String(), 120*time.Second)
	sameChecksums(t, p, r, "app")

	// The archiving host's key cannot read; another identity cannot either.
	cfgC := withStore(t, t.TempDir(), srv, pub, "", testSource{name: "db", p: p, serverID: 9302})
	other := t.TempDir()
	if code, _, se := runCmd(t, "keygen", "--dir", other); code != exitOK {
		t.Fatal(se)
	}
	cfgD := withStore(t, t.TempDir(), srv, "", filepath.Join(other, storage.IdentityFileName), testSource{name: "db", p: p, serverID: 9303})
	// A bucket this host cannot read: wrong keys, a bucket that does not
	// exist.
	cfgE := withStore(t, t.TempDir(), srv, pub, key, testSource{name: "db", p: p, serverID: 9304})
	t.Setenv("TEST_S3_BAD_SECRET", "not-the-secret")
	if b, err := os.ReadFile(cfgE); err == nil {
		os.WriteFile(cfgE, []byte(strings.Replace(string(b), "secret_key_env: TEST_S3_SECRET", "secret_key_env: TEST_S3_BAD_SECRET", 1)), 0o600)
	}
	cfgF := withStore(t, t.TempDir(), srv, pub, key, testSource{name: "db", p: p, serverID: 9305})
	if b, err := os.ReadFile(cfgF); err == nil {
		os.WriteFile(cfgF, []byte(strings.Replace(string(b), "bucket: "+srv.Bucket, "bucket: no-such-bucket", 1)), 0o600)
	}
	for _, c := range []struct{ cfg, want string }{{cfgC, "identity"}, {cfgD, "no identity matches"}, {cfgE, "s3://"}, {cfgF, "no-such-bucket"}} {
		code, _, se := runCmd(t, "restore", "--config", c.cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port), "--force")
		if code == exitOK || !strings.Contains(se, c.want) || strings.Count(strings.TrimSpace(se), "\n") > 1 {
			t.Fatalf("restore with the wrong key: exit %d, %q; want one line with %q", code, se, c.want)
		}
		t.Log(strings.TrimSpace(se))
	}
}

// TestStoreLocalKeepAndNewHost: with storage.local_keep: 0, run keeps
// only the active file locally once the store holds the others; verify and
// restore on that host fetch them back. Then a new host with an empty
// archive directory: run refuses in one line without the identity, and
// with it continues the store's archive (same files, same generation).
func TestStoreLocalKeepAndNewHost(t *testing.T) {
	srv, pub, key := storeWithKeys(t)
	p := startPrimary(t, 1, 6)
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	p.Exec(t, "CREATE DATABASE app")
	small := func(cfg string) string {
		b, _ := os.ReadFile(cfg)
		s := strings.Replace(string(b), "max_file_size: 4MiB", "max_file_size: 1MiB", 1)
		s = strings.Replace(s, "storage:\n", "storage:\n  local_keep: 0\n", 1)
		os.WriteFile(cfg, []byte(s), 0o600)
		return cfg
	}
	hostA := t.TempDir()
	cfgA := small(withStore(t, hostA, srv, pub, key, testSource{name: "db", p: p, serverID: 9310}))
	dirA := filepath.Join(hostA, "archive", "db")
	setHTTPListen(t, cfgA)
	stop := startRun(t, cfgA)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	workload(ctx, t, p, "app", 3)
	cancel()
	if code, _, se := runCmd(t, "snapshot", "--config", cfgA, "--source", "db"); code != exitOK {
		t.Fatalf("snapshot: %d %s", code, se)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	workload(ctx, t, p, "app", 4)
	cancel()
	want, _ := understudy.ParsePosition(p.GTIDBinlogPos(t))
	b, err := s3.New(srv.Settings("site/"))
	if err != nil {
		t.Fatal(err)
	}
	mariadbtest.Eventually(t, "the store at the primary's position", 60*time.Second, func() bool {
		v, err := remote.OpenView(context.Background(), remote.Store{Plain: b}, "db")
		return err == nil && v.Position().ContainsPosition(want)
	})
	var evicted, sealed int
	mariadbtest.Eventually(t, "sealed files evicted locally", 30*time.Second, func() bool {
		a, err := archive.Open(dirA)
		if err != nil {
			return false
		}
		evicted, sealed = 0, 0
		for _, f := range a.Files() {
			if f.Sealed {
				sealed++
			}
			if _, err := os.Stat(filepath.Join(dirA, f.Name)); f.Evicted && os.IsNotExist(err) {
				evicted++
			}
		}
		return sealed >= 2 && evicted == sealed
	})
	t.Logf("%d sealed files, all held only in the store", sealed)
	if code, out, se := runCmd(t, "status", "--config", cfgA); code != exitOK || !strings.Contains(out, "  store: GTID position "+want.String()+", holds everything archived, last upload ") {
		t.Fatalf("status: %d %s %s", code, out, se)
	}
	code, out, se := runCmd(t, "verify", "--config", cfgA, "--source", "db")
	if code != exitOK {
		t.Fatalf("verify on the archiving host: %d %s %s", code, out, se)
	}
	// A drill on that host fetches back the files held only in the store;
	// then a restore.
	if code, out, se := runCmd(t, "drill", "--config", cfgA, "--source", "db"); code != exitOK {
		t.Fatalf("drill on the archiving host with files evicted: %d %s %s", code, out, se)
	}
	target := mariadbtest.Start(t, mariadbtest.Options{Stock: true, ServerID: 61})
	code, out, se = runCmd(t, "restore", "--config", cfgA, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port), "--until-gtid", want.String())
	if code != exitOK {
		t.Fatalf("restore on the archiving host with files evicted: %d %s %s", code, out, se)
	}
	sameChecksums(t, p, target, "app")
	stop()

	// A new host.
	hostB := t.TempDir()
	cfgB := withStore(t, hostB, srv, pub, "", testSource{name: "db", p: p, serverID: 9310})
	code, _, se = runCmd(t, "run", "--config", cfgB, "--until-caught-up")
	lines := strings.Split(strings.TrimSpace(se), "\n")
	last := lines[len(lines)-1]
	if code == exitOK || !strings.HasPrefix(last, "understudy run: source db: ") || !strings.Contains(last, "identity_file") || strings.Contains(se, "level=ERROR") {
		t.Fatalf("run on a new host without the identity: exit %d, %q; want an error line naming identity_file", code, se)
	}
	t.Log(last)
	if hasLocalArchive(filepath.Join(hostB, "archive", "db")) {
		t.Fatal("the refused run wrote an archive")
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	workload(ctx, t, p, "app", 5)
	cancel()
	hostC := t.TempDir()
	cfgC := withStore(t, hostC, srv, pub, key, testSource{name: "db", p: p, serverID: 9310})
	if code, _, se = runCmd(t, "run", "--config", cfgC, "--until-caught-up"); code != exitOK {
		t.Fatalf("run on a new host with the identity: %d %s", code, se)
	}
	dirC := filepath.Join(hostC, "archive", "db")
	a, err := archive.Open(dirC)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Generations()) != 1 {
		t.Fatalf("the new host's archive has %d generations; want the store's one, continued", len(a.Generations()))
	}
	checkExactlyOnce(t, p, dirC)
}

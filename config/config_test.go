package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		{"bad duration", strings.Replace(good, "heartbeat: 2s", "heartbeat: often", 1), `line 19: sources[1].heartbeat: invalid duration "often" (want e.g. 90s, 36h or 14d)`},
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

// withArchive adds lines to the archive block of good.
func withArchive(lines string) string {
	return strings.Replace(good, "  max_file_size: 64MiB\n", "  max_file_size: 64MiB\n"+lines, 1)
}

// withDB2 adds lines to the second source of good.
func withDB2(lines string) string { return good + lines }

func TestDurations(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"36h", 36 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"500ms", 500 * time.Millisecond},
		{"14d", 14 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"1.5d", 36 * time.Hour},
		{"0.1d", 144 * time.Minute},
		{".5d", 12 * time.Hour},
		{"0", 0},
	}
	for _, tc := range cases {
		c, err := Parse("u.yaml", []byte("retention:\n  min_snapshots: 1\n  window: "+tc.in+"\n"+good))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := c.Retention.Window.D(); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
	}
	if d, err := ParseDuration("-1d12h"); err != nil || d != -36*time.Hour {
		t.Errorf("ParseDuration(-1d12h)=%s, %v", d, err)
	}
	c, err := Parse("u.yaml", []byte(withDB2("    snapshot:\n      every: 7d\n")))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Sources[1].Heartbeat.D(); got != 2*time.Second {
		t.Errorf("heartbeat=%s", got)
	}
	st, err := c.ResolveSnapshot(&c.Sources[1])
	if err != nil || st.Every != 7*24*time.Hour {
		t.Errorf("every=%s err=%v", st.Every, err)
	}
}

func TestInvalidDurations(t *testing.T) {
	for _, in := range []string{"often", "14", "d", "1dd", "5days", "1.d.5", "1e3d", "100000000d", "{a: 1}", "[1d]"} {
		_, err := Parse("u.yaml", []byte(withArchive("  sync_interval: "+in+"\n")))
		if err == nil {
			t.Errorf("%s: accepted", in)
			continue
		}
		if !strings.HasPrefix(err.Error(), "u.yaml: line 5: archive.sync_interval: invalid duration") || !strings.Contains(err.Error(), "(want e.g. 90s, 36h or 14d)") {
			t.Errorf("%s: error %q", in, err)
		}
	}
}

func TestArchiveModes(t *testing.T) {
	cases := []struct {
		lines, start, gap, err string
		age                    time.Duration
	}{
		{"", StartOldest, GapNewGeneration, "", time.Hour},
		{"  start: current\n  on_gap: stop\n  max_file_age: 10m\n", StartCurrent, GapStop, "", 10 * time.Minute},
		{"  start: oldest\n  on_gap: new-generation\n  max_file_age: 1d\n", StartOldest, GapNewGeneration, "", 24 * time.Hour},
		{"  max_file_age: 0s\n", StartOldest, GapNewGeneration, "", time.Hour},
		{"  start: newest\n", "", "", `archive.start: "newest" is not oldest or current`, 0},
		{"  on_gap: skip\n", "", "", `archive.on_gap: "skip" is not new-generation or stop`, 0},
		{"  max_file_age: 500ms\n", "", "", "archive.max_file_age: 500ms is less than 1s", 0},
		{"  max_file_age: -1h\n", "", "", "archive.max_file_age: must not be negative", 0},
		{"  max_file_age: 400d\n", "", "", "archive.max_file_age: 9600h0m0s is more than 366d (a file is sealed by size or age, at the latest after a year)", 0},
	}
	for _, tc := range cases {
		c, err := Parse("u.yaml", []byte(withArchive(tc.lines)))
		if tc.err != "" {
			if err == nil || err.Error() != "u.yaml: "+tc.err {
				t.Errorf("%q: err=%v, want %q", tc.lines, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.lines, err)
			continue
		}
		if a := c.Archive; a.StartMode() != tc.start || a.GapMode() != tc.gap || a.FileAge() != tc.age {
			t.Errorf("%q: start=%s on_gap=%s age=%s", tc.lines, a.StartMode(), a.GapMode(), a.FileAge())
		}
	}
}

func TestMinFree(t *testing.T) {
	cases := []struct {
		in, err, str string
		want         FreeSpace
		free, total  uint64
		below        bool
	}{
		{in: "", want: FreeSpace{Percent: 5}, str: "5%", free: 4, total: 100, below: true},
		{in: "5%", want: FreeSpace{Percent: 5}, str: "5%", free: 5, total: 100, below: false},
		{in: "0.5%", want: FreeSpace{Percent: 0.5}, str: "0.5%", free: 4 << 20, total: 1 << 30, below: true},
		{in: "0%", want: FreeSpace{}, str: "0%", free: 0, total: 100, below: false},
		{in: "10GiB", want: FreeSpace{Bytes: 10 << 30}, str: "10.0 GiB", free: 10<<30 - 1, total: 1 << 40, below: true},
		{in: "10GiB", want: FreeSpace{Bytes: 10 << 30}, str: "10.0 GiB", free: 10 << 30, total: 1 << 40, below: false},
		{in: "1536MiB", want: FreeSpace{Bytes: 1536 << 20}, str: "1.5 GiB", free: 1 << 30, total: 0, below: true},
		{in: "5%", want: FreeSpace{Percent: 5}, str: "5%", free: 0, total: 0, below: false},
		{in: "100%", err: "archive.min_free: 100% is not a percentage from 0% to below 100%"},
		{in: "-1%", err: "archive.min_free: -1% is not a percentage from 0% to below 100%"},
		{in: "lots", err: `line 5: archive.min_free: invalid free space "lots" (want a percentage such as 5% or a size such as 10GiB)`},
		{in: "NaN%", err: `line 5: archive.min_free: invalid free space "NaN%"`},
		{in: "-5GiB", err: `line 5: archive.min_free: invalid free space "-5GiB"`},
	}
	for _, tc := range cases {
		y := good
		if tc.in != "" {
			y = withArchive("  min_free: " + tc.in + "\n")
		}
		c, err := Parse("u.yaml", []byte(y))
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), "u.yaml: "+tc.err) {
				t.Errorf("%q: err=%v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		f := c.Archive.MinFreeSpace()
		if f != tc.want || f.String() != tc.str || f.Below(tc.free, tc.total) != tc.below {
			t.Errorf("%q: got %+v %q, Below(%d, %d)=%v", tc.in, f, f, tc.free, tc.total, f.Below(tc.free, tc.total))
		}
	}
}

func TestRetention(t *testing.T) {
	top := "retention:\n  window: 14d\n"
	cases := []struct {
		name, yaml string
		db1, db2   RetentionSettings
	}{
		{"none", good, RetentionSettings{}, RetentionSettings{}},
		{"top only", top + good,
			RetentionSettings{Enabled: true, Window: 14 * 24 * time.Hour, MinSnapshots: 1, PruneBinlogs: true},
			RetentionSettings{Enabled: true, Window: 14 * 24 * time.Hour, MinSnapshots: 1, PruneBinlogs: true}},
		{"merge", top + withDB2("    retention:\n      keep_daily: 7\n"),
			RetentionSettings{Enabled: true, Window: 14 * 24 * time.Hour, MinSnapshots: 1, PruneBinlogs: true},
			RetentionSettings{Enabled: true, Window: 14 * 24 * time.Hour, MinSnapshots: 1, KeepDaily: 7, PruneBinlogs: true}},
		{"source wins", "retention:\n  window: 14d\n  min_snapshots: 3\n  keep_weekly: 4\n" +
			withDB2("    retention:\n      window: 36h\n      keep_weekly: 0\n      keep_monthly: 6\n"),
			RetentionSettings{Enabled: true, Window: 14 * 24 * time.Hour, MinSnapshots: 3, KeepWeekly: 4, PruneBinlogs: true},
			RetentionSettings{Enabled: true, Window: 36 * time.Hour, MinSnapshots: 3, KeepMonthly: 6, PruneBinlogs: true}},
		{"source only", withDB2("    retention:\n      keep_daily: 7\n      keep_weekly: 4\n      keep_monthly: 6\n      min_snapshots: 2\n"),
			RetentionSettings{},
			RetentionSettings{Enabled: true, MinSnapshots: 2, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6, PruneBinlogs: true}},
		{"keep shorthand", withDB2("    snapshot:\n      keep: 3\n"),
			RetentionSettings{},
			RetentionSettings{Enabled: true, KeepLast: 3, MinSnapshots: 3}},
		{"keep 0 with retention", top + withDB2("    snapshot:\n      keep: 0\n"),
			RetentionSettings{Enabled: true, Window: 14 * 24 * time.Hour, MinSnapshots: 1, PruneBinlogs: true},
			RetentionSettings{Enabled: true, Window: 14 * 24 * time.Hour, MinSnapshots: 1, PruneBinlogs: true}},
	}
	for _, tc := range cases {
		c, err := Parse("u.yaml", []byte(tc.yaml))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := c.ResolveRetention(&c.Sources[0]); got != tc.db1 {
			t.Errorf("%s: db1 %+v, want %+v", tc.name, got, tc.db1)
		}
		if got := c.ResolveRetention(&c.Sources[1]); got != tc.db2 {
			t.Errorf("%s: db2 %+v, want %+v", tc.name, got, tc.db2)
		}
	}
}

func TestRetentionErrors(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"negative window", "retention:\n  window: -1d\n" + good, "retention.window: must not be negative"},
		{"negative min", "retention:\n  min_snapshots: -1\n" + good, "retention.min_snapshots: must not be negative"},
		{"negative source keep_daily", withDB2("    retention:\n      keep_daily: -7\n"), "sources[1].retention.keep_daily: must not be negative"},
		{"negative source keep_monthly", withDB2("    retention:\n      keep_monthly: -1\n"), "sources[1].retention.keep_monthly: must not be negative"},
		{"negative keep", withDB2("    snapshot:\n      keep: -1\n"), "sources[1].snapshot: every, chunk_rows and keep must not be negative"},
		{"empty top", "retention: {}\n" + good, "retention: give window or keep_daily/keep_weekly/keep_monthly"},
		{"zero top", "retention:\n  window: 0s\n  keep_daily: 0\n" + good, "retention: give window or keep_daily/keep_weekly/keep_monthly"},
		{"empty source", withDB2("    retention: {}\n"), "sources[1].retention: give window or keep_daily/keep_weekly/keep_monthly"},
		{"source zeroes top", "retention:\n  window: 14d\n" + withDB2("    retention:\n      window: 0s\n"), "sources[1].retention: give window or keep_daily/keep_weekly/keep_monthly"},
		{"keep and top retention", "retention:\n  window: 14d\n" + withDB2("    snapshot:\n      keep: 3\n"),
			"sources[1].snapshot.keep: cannot be combined with retention; use retention.min_snapshots instead"},
		{"keep and source retention", withDB2("    snapshot:\n      keep: 3\n    retention:\n      window: 14d\n"),
			"sources[1].snapshot.keep: cannot be combined with sources[1].retention; use retention.min_snapshots instead"},
		{"unknown top key", "retention:\n  keep_yearly: 2\n" + good, `line 2: unknown key "keep_yearly" in retention`},
		{"unknown source key", withDB2("    retention:\n      keep_yearly: 2\n"), `line 21: unknown key "keep_yearly" in a source's retention`},
		{"bad int", withDB2("    retention:\n      keep_daily: seven\n"), `line 21: invalid value "seven" (want a whole number)`},
		{"bad window", "retention:\n  window: fortnight\n" + good, `line 2: retention.window: invalid duration "fortnight"`},
		{"not a mapping", "retention: 14d\n" + good, `line 1: invalid value "14d" (want a mapping)`},
		{"bad on_start", withDB2("    snapshot:\n      on_start: maybe\n"), `line 21: invalid value "maybe" (want true or false)`},
	}
	for _, tc := range cases {
		_, err := Parse("u.yaml", []byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), "u.yaml: "+tc.want) {
			t.Errorf("%s: err=%v, want %q", tc.name, err, tc.want)
		}
	}
	// an empty top-level block is fine when every source fills it in
	y := "retention: {}\n" + strings.Replace(good, "    server_id: 9001\n", "    server_id: 9001\n    retention: {window: 1d}\n", 1) + "    retention: {keep_daily: 7}\n"
	if _, err := Parse("u.yaml", []byte(y)); err != nil {
		t.Errorf("empty top, sources fill it: %v", err)
	}
}

func TestSnapshotOnStart(t *testing.T) {
	for _, tc := range []struct {
		lines string
		want  bool
	}{
		{"", true},
		{"    snapshot:\n      every: 1d\n", true},
		{"    snapshot:\n      on_start: true\n", true},
		{"    snapshot:\n      on_start: false\n", false},
	} {
		c, err := Parse("u.yaml", []byte(withDB2(tc.lines)))
		if err != nil {
			t.Errorf("%q: %v", tc.lines, err)
			continue
		}
		st, err := c.ResolveSnapshot(&c.Sources[1])
		if err != nil || st.OnStart != tc.want {
			t.Errorf("%q: on_start=%v err=%v, want %v", tc.lines, st.OnStart, err, tc.want)
		}
	}
}

// TestSnapshotFrom: the replica of snapshot.from is a server of its own. It
// gets no TLS from the source: without a tls block of its own it is reached
// without TLS, and with one it is verified as its own host. max_lag is
// range-checked; 0 (absent) leaves the snapshot package's default.
func TestSnapshotFrom(t *testing.T) {
	src := "    tls:\n      server_name: primary.internal\n      insecure_skip_verify: false\n"
	from := "    snapshot:\n      from:\n        host: replica1.internal\n        port: 3306\n        user: backup\n        password: pw\n"
	resolve := func(t *testing.T, lines string) SnapshotSettings {
		t.Helper()
		c, err := Parse("u.yaml", []byte(withDB2(lines)))
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.Resolve(&c.Sources[1])
		if err != nil || s.TLS == nil || s.TLS.ServerName != "primary.internal" {
			t.Fatalf("the source's own TLS: %+v, %v", s.TLS, err)
		}
		st, err := c.ResolveSnapshot(&c.Sources[1])
		if err != nil {
			t.Fatal(err)
		}
		if !st.FromReplica || st.Conn.Addr() != "replica1.internal:3306" || st.Conn.User != "backup" || st.Conn.Password != "pw" {
			t.Fatalf("snapshot.from resolved to %s as %s (from replica %v)", st.Conn.Addr(), st.Conn.User, st.FromReplica)
		}
		return st
	}

	st := resolve(t, src+from)
	if st.Conn.TLS != nil {
		t.Fatalf("snapshot.from without a tls block has TLS %+v: the source's TLS leaked into it", st.Conn.TLS)
	}
	if st.MaxLag != 0 {
		t.Fatalf("max_lag absent: %v, want 0 (the snapshot package's default)", st.MaxLag)
	}

	st = resolve(t, src+from+"        max_lag: 90s\n        tls:\n          insecure_skip_verify: true\n")
	if tc := st.Conn.TLS; tc == nil || tc.ServerName != "replica1.internal" || !tc.InsecureSkipVerify || tc.RootCAs != nil || tc.Certificates != nil {
		t.Fatalf("snapshot.from's own tls block resolved to %+v: want server name replica1.internal, insecure_skip_verify, nothing else", tc)
	}
	if got, want := st.MaxLag, 90*time.Second; got != want {
		t.Fatalf("max_lag=%v, want %v", got, want)
	}

	for _, tc := range []struct{ name, lines, want string }{
		{"max_lag 500ms", from + "        max_lag: 500ms\n", "sources[1].snapshot.from.max_lag: 500ms is not between 1s and 168h0m0s"},
		{"max_lag 8d", from + "        max_lag: 8d\n", "sources[1].snapshot.from.max_lag: 192h0m0s is not between 1s and 168h0m0s"},
		{"max_lag negative", from + "        max_lag: -1m\n", "sources[1].snapshot.from.max_lag: -1m0s is not between 1s and 168h0m0s"},
		{"max_lag word", from + "        max_lag: soon\n", `sources[1].snapshot.from.max_lag: invalid duration "soon"`},
		{"cert without key", from + "        tls:\n          cert: c.pem\n", "sources[1].snapshot.from.tls: cert and key go together"},
		{"unknown tls key", from + "        tls:\n          cafile: c.pem\n", `unknown key "cafile"`},
	} {
		_, err := Parse("u.yaml", []byte(withDB2(tc.lines)))
		if err == nil || !strings.HasPrefix(err.Error(), "u.yaml: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err=%v, want %q", tc.name, err, tc.want)
		}
	}
	for _, ok := range []string{"1s", "7d", "5m"} {
		if _, err := Parse("u.yaml", []byte(withDB2(from+"        max_lag: "+ok+"\n"))); err != nil {
			t.Errorf("max_lag %s: %v", ok, err)
		}
	}

	// The replica's CA file is read as its own key.
	c, err := Parse(filepath.Join(t.TempDir(), "u.yaml"), []byte(withDB2(from+"        tls:\n          ca: missing-ca.pem\n")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResolveSnapshot(&c.Sources[1]); err == nil || !strings.Contains(err.Error(), "source db2: snapshot.from.tls.ca:") || !strings.Contains(err.Error(), "missing-ca.pem") {
		t.Fatalf("snapshot.from.tls.ca missing: %v", err)
	}
}

// TestResolveReplication: the account of replicas of the primary comes
// from replication_user and one password key, and its absence is named.
func TestResolveReplication(t *testing.T) {
	t.Setenv("REPL_PW", "from-env")
	base := "archive:\n  dir: /tmp/a\nsources:\n  - name: db1\n    host: h\n    port: 3306\n    user: u\n    password: p\n    server_id: 9\n"
	for _, tc := range []struct {
		extra, user, pw, err string
	}{
		{"    replication_user: repl\n    replication_password_env: REPL_PW\n", "repl", "from-env", ""},
		{"    replication_user: repl\n    replication_password: lit\n", "repl", "lit", ""},
		{"", "", "", "has no replication_user"},
		{"    replication_user: repl\n    replication_password: a\n    replication_password_env: REPL_PW\n", "", "", "give one of replication_password"},
		{"    replication_user: repl\n    replication_password_env: NOT_SET_ANYWHERE\n", "", "", "NOT_SET_ANYWHERE"},
	} {
		c, err := Parse("understudy.yaml", []byte(base+tc.extra))
		if err != nil {
			t.Fatal(err)
		}
		user, pw, err := c.ResolveReplication(&c.Sources[0])
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("%q: error %v, want one about %q", tc.extra, err, tc.err)
			}
			continue
		}
		if err != nil || user != tc.user || pw != tc.pw {
			t.Fatalf("%q: %q %q %v", tc.extra, user, pw, err)
		}
	}
}

// TestDrill: the drill block's defaults (an auto target, 4 threads, no
// schedule), a given target with its password, and every error named by
// its key, drill.every out of its range included.
func TestDrill(t *testing.T) {
	t.Setenv("DRILL_PW", "drill-pw")
	c, err := Parse("/etc/understudy.yaml", []byte(withDB2("    drill:\n      every: 1d\n      target: root@scratch.internal:3307\n      password_env: DRILL_PW\n      threads: 8\n      scratch_dir: tmp\n")))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.ResolveDrill(&c.Sources[1])
	if err != nil {
		t.Fatal(err)
	}
	if d.Every != 24*time.Hour || d.Threads != 8 || d.ScratchDir != "/etc/tmp" || d.Target == nil ||
		d.Target.User != "root" || d.Target.Host != "scratch.internal" || d.Target.Port != 3307 || d.Target.Password != "drill-pw" || d.Target.TLS != nil {
		t.Fatalf("ResolveDrill = %+v (target %+v)", d, d.Target)
	}
	for _, lines := range []string{"", "    drill:\n      target: auto\n", "    drill:\n      every: 1s\n"} {
		c, err := Parse("u.yaml", []byte(withDB2(lines)))
		if err != nil {
			t.Fatalf("%q: %v", lines, err)
		}
		d, err := c.ResolveDrill(&c.Sources[1])
		if err != nil || d.Target != nil || d.Threads != 4 {
			t.Fatalf("%q: ResolveDrill = %+v, %v; want an auto target and 4 threads", lines, d, err)
		}
	}
	for _, tc := range []struct{ lines, want string }{
		{"    drill:\n      every: 500ms\n", "sources[1].drill.every: 500ms is not between 1s and 8784h0m0s"},
		{"    drill:\n      every: 400d\n", "sources[1].drill.every: 9600h0m0s is not between 1s and 8784h0m0s"},
		{"    drill:\n      every: -1h\n", "sources[1].drill.every: -1h0m0s is not between 1s and 8784h0m0s"},
		{"    drill:\n      every: daily\n", `sources[1].drill.every: invalid duration "daily"`},
		{"    drill:\n      target: scratch.internal:3306\n", `sources[1].drill.target: "scratch.internal:3306" is not auto or USER@HOST:PORT`},
		{"    drill:\n      target: root@scratch.internal:70000\n", `sources[1].drill.target: "root@scratch.internal:70000": 70000 is not a TCP port (1..65535)`},
		{"    drill:\n      password: pw\n", "sources[1].drill: password, password_file, password_env and tls are for a drill.target USER@HOST:PORT, not auto"},
		{"    drill:\n      target: root@h:3306\n      password: a\n      password_env: DRILL_PW\n", "sources[1].drill: give at most one of password, password_file and password_env"},
		{"    drill:\n      threads: 300\n", "sources[1].drill.threads: 300 is not between 1 and 256"},
		{"    drill:\n      evry: 1d\n", `unknown key "evry" in drill`},
	} {
		_, err := Parse("u.yaml", []byte(withDB2(tc.lines)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err=%v, want %q", tc.lines, err, tc.want)
		}
	}
}

const withStorage = good + `
storage:
  s3:
    bucket: backups
    prefix: understudy
    endpoint: https://s3.example.net
    region: eu-west-1
    access_key_env: T_AWS_KEY
    secret_key_file: secret.key
    path_style: true
    ca_file: ca.pem
  local_keep: 1GiB
  upload_interval: 500ms
  encryption:
    recipients_file: age.pub
    identity_file: /etc/understudy/age.key
`

// TestStorage: the storage block resolves to the settings storage/s3
// opens, with the keys read and the paths made absolute.
func TestStorage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "u.yaml")
	c, err := Parse(path, []byte(withStorage))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("T_AWS_KEY", "AKIA1")
	if _, err := c.ResolveStorage(); err == nil || !strings.Contains(err.Error(), "storage.s3.secret_key_file") {
		t.Fatalf("ResolveStorage without the secret file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.key"), []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := c.ResolveStorage()
	if err != nil {
		t.Fatal(err)
	}
	s := st.S3
	if s.Bucket != "backups" || s.Prefix != "understudy/" || s.Endpoint != "https://s3.example.net" || s.Region != "eu-west-1" ||
		s.AccessKey != "AKIA1" || s.SecretKey != "s3cr3t" || !s.PathStyle || s.CAFile != filepath.Join(dir, "ca.pem") {
		t.Fatalf("S3 settings %+v", s)
	}
	if st.LocalKeep != 1<<30 || st.UploadInterval != 500*time.Millisecond || st.RecipientsFile != filepath.Join(dir, "age.pub") || st.IdentityFile != "/etc/understudy/age.key" || !st.Encrypted() {
		t.Fatalf("settings %+v", st)
	}
	t.Setenv("T_AWS_KEY", "")
	if _, err := c.ResolveStorage(); err == nil || !strings.Contains(err.Error(), "storage.s3.access_key_env: environment variable T_AWS_KEY is empty") {
		t.Fatalf("empty access key: %v", err)
	}

	// The defaults, and no storage at all.
	minimal := good + "storage:\n  s3:\n    bucket: b-1\n    endpoint: http://127.0.0.1:9000\n    access_key_env: T_AWS_KEY\n    secret_key_env: T_AWS_KEY\n"
	t.Setenv("T_AWS_KEY", "k")
	c, err = Parse(path, []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if st, err = c.ResolveStorage(); err != nil || st.LocalKeep != DefaultLocalKeep || st.UploadInterval != time.Second || st.S3.Prefix != "" || st.Encrypted() {
		t.Fatalf("defaults: %+v, %v", st, err)
	}
	c, _ = Parse(path, []byte(good))
	if st, err := c.ResolveStorage(); st != nil || err != nil {
		t.Fatalf("without a storage block: %+v, %v; want nil", st, err)
	}
}

// TestStorageErrors: every mistake in the storage block is refused with
// a message that names the key.
func TestStorageErrors(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(withStorage, old) {
			t.Fatalf("%q is not in the config", old)
		}
		return strings.Replace(withStorage, old, new, 1)
	}
	cases := []struct{ yaml, want string }{
		{edit("    region: eu-west-1\n", "    regoin: eu-west-1\n"), `unknown key "regoin" in storage.s3`},
		{edit("  local_keep: 1GiB\n", "  local_kept: 1GiB\n"), `unknown key "local_kept" in storage`},
		{edit("    identity_file:", "    identity:"), `unknown key "identity" in storage.encryption`},
		{good + "storage:\n  local_keep: 1GiB\n", "storage.s3: required"},
		{edit("    bucket: backups\n", ""), "storage.s3.bucket: required"},
		{edit("bucket: backups", "bucket: Backups_1"), `storage.s3.bucket: "Backups_1" is not a bucket name`},
		{edit("prefix: understudy", "prefix: /understudy"), `storage.s3.prefix: "/understudy" is not a prefix`},
		{edit("prefix: understudy", "prefix: a//b"), `storage.s3.prefix: "a//b"`},
		{edit("https://s3.example.net", "http://s3.example.net"), "storage.s3.endpoint: \"http://s3.example.net\": http:// is allowed only for a loopback host"},
		{edit("https://s3.example.net", "http://10.0.0.7:9000"), "http:// is allowed only for a loopback host"},
		{edit("https://s3.example.net", "s3.example.net"), `storage.s3.endpoint: "s3.example.net" is not a URL`},
		{edit("https://s3.example.net", "https://s3.example.net/backups"), "storage.s3.endpoint: \"https://s3.example.net/backups\": give only the scheme, host and port"},
		{edit("    access_key_env: T_AWS_KEY\n", ""), "storage.s3: give exactly one of access_key_env and access_key_file"},
		{edit("    access_key_env: T_AWS_KEY\n", "    access_key_env: T_AWS_KEY\n    access_key_file: k\n"), "storage.s3: give exactly one of access_key_env and access_key_file"},
		{edit("    secret_key_file: secret.key\n", "    secret_key_file: secret.key\n    secret_key_env: X\n"), "storage.s3: give exactly one of secret_key_env and secret_key_file"},
		{edit("https://s3.example.net", "http://127.0.0.1:9000"), "storage.s3.ca_file: the endpoint is http://"},
		{edit("local_keep: 1GiB", "local_keep: -1GiB"), "storage.local_keep: invalid size"},
		{edit("local_keep: 1GiB", "local_keep: lots"), "storage.local_keep: invalid size"},
		{edit("upload_interval: 500ms", "upload_interval: 10ms"), "storage.upload_interval: 10ms is not between 100ms and 1h0m0s"},
		{edit("upload_interval: 500ms", "upload_interval: 2d"), "storage.upload_interval: 48h0m0s is not between 100ms and 1h0m0s"},
		{edit("upload_interval: 500ms", "upload_interval: soon"), "storage.upload_interval: invalid duration"},
		{edit("path_style: true", "path_style: yes please"), `invalid value "yes please" (want true or false)`},
		{edit("    recipients_file: age.pub\n    identity_file: /etc/understudy/age.key\n", "    recipients_file: \"\"\n"), "storage.encryption: give recipients_file (to write), identity_file (to read), or both"},
	}
	for _, tc := range cases {
		_, err := Parse("u.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line with %q", tc.want, err, tc.want)
		}
	}
}

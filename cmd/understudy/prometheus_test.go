package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/understudy-db/understudy/internal/s3test"
	"github.com/understudy-db/understudy/snapshot"
)

// The alert rules and the dashboard, relative to this package.
const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	dashboardFile = "../../deploy/grafana/understudy.json"
)

// afterEvent lists the metrics that the alert rules or the dashboard use
// but that a freshly started run does not have yet, with the reason. Every
// other metric they name must exist once run has scraped once.
var afterEvent = map[string]string{
	"understudy_drill_last_success_timestamp_seconds": "read from the source's drill record, which its first drill writes",
	"understudy_drill_last_run_timestamp_seconds":     "read from the source's drill record, which its first drill writes",
	"understudy_drill_last_ok":                        "read from the source's drill record, which its first drill writes",
	"understudy_drill_rto_seconds":                    "read from the source's drill record, which its first successful drill writes",
}

// TestPrometheusScrapesRuleMetrics starts a real Prometheus that scrapes
// a running `understudy run` (a semi-sync source with a binlog server, a
// snapshot schedule and a drill schedule) and evaluates alerts.yml. Then,
// through Prometheus's HTTP API: every expression of the alert rules and
// of the Grafana dashboard is valid PromQL, every metric they name exists
// (but those of afterEvent), the rules evaluate without error, and a
// healthy understudy fires no alert.
func TestPrometheusScrapesRuleMetrics(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (Debian's prometheus package; scripts/test.sh installs it): %v", err)
	}
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	exprs := ruleExprs(t, rules)
	dashExprs, dashNames := dashboardExprs(t, dashboardFile)
	exprs = append(exprs, dashExprs...)

	p := startPrimary(t, 1, 1, "--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-master-wait-no-slave=OFF")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO app.t VALUES (1), (2), (3)")
	dir := t.TempDir()
	// With a store: the store metrics exist too.
	srv := s3test.Start(t, s3test.Options{})
	t.Setenv("TEST_S3_ACCESS", srv.AccessKey)
	t.Setenv("TEST_S3_SECRET", srv.SecretKey)
	cfg := withStore(t, dir, srv, "", "", testSource{name: "db", p: p, serverID: 9810, semiSync: true, serve: freeAddr(t)})
	httpAddr := setHTTPListen(t, cfg)
	// A drill is due a minute after start at the soonest: this test is
	// over by then, so no drill runs.
	addSnapshotConfig(t, cfg, "    snapshot:\n      every: 1h\n      threads: 2\n    drill:\n      every: 24h\n")
	startRun(t, cfg)
	// The base snapshot, taken at start: the snapshot metrics and the
	// restore windows then exist.
	deadline := time.Now().Add(60 * time.Second)
	for {
		list, err := snapshot.List(filepath.Join(dir, "archive", "db", "snapshots"))
		if err == nil && len(list) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no base snapshot 60 s after start: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.Exec(t, "INSERT INTO app.t VALUES (4)")
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 20*time.Second)

	prom := startPrometheus(t, promBin, httpAddr, rules)
	// A scrape after the snapshot: its metrics and a restore window.
	prom.waitQuery(t, `understudy_restore_windows{source="db"} >= 1 and on(source) understudy_snapshot_last_success_timestamp_seconds`, 30*time.Second)

	// Every expression is valid PromQL (variables replaced).
	for _, e := range exprs {
		if _, err := prom.query(e); err != nil {
			t.Errorf("expression does not evaluate: %v\n%s", err, e)
		}
	}
	// Every metric they name exists.
	names := map[string]bool{}
	for _, e := range append(exprs, dashNames...) {
		for _, n := range metricNames(e) {
			names[n] = true
		}
	}
	if len(names) < 30 {
		t.Fatalf("only %d metric names found in the rules and the dashboard: %v", len(names), names)
	}
	for _, n := range sortedKeys(names) {
		if _, ok := afterEvent[n]; ok {
			continue
		}
		res, err := prom.query(fmt.Sprintf("count({__name__=%q})", n))
		if err != nil {
			t.Fatal(err)
		}
		if len(res) == 0 {
			t.Errorf("metric %s, used in the alert rules or the dashboard, does not exist in Prometheus", n)
		}
	}
	for n := range afterEvent {
		if !names[n] {
			t.Errorf("afterEvent lists %s, which neither the rules nor the dashboard use", n)
		}
	}

	// Some values, through Prometheus.
	for q, want := range map[string]string{
		`understudy_source_streaming{source="db"}`:                                      "1",
		`understudy_source_state{source="db", state="streaming"}`:                       "1",
		`understudy_semi_sync_active{source="db"}`:                                      "1",
		`understudy_snapshot_interval_seconds{source="db"}`:                             "3600",
		`understudy_drill_interval_seconds{source="db"}`:                                "86400",
		`understudy_binlog_server_replicas{source="db"}`:                                "0",
		`understudy_archive_generation{source="db"}`:                                    "1",
		`understudy_restore_window_start_timestamp_seconds{source="db"} <= bool time()`: "1",
	} {
		res, err := prom.query(q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Value[1] != want {
			t.Errorf("%s = %v, want %s", q, res, want)
		}
	}

	// The rules evaluate without error, and none fires or is pending for
	// a healthy source.
	prom.waitRules(t, rules, 20*time.Second)
	res, err := prom.query("ALERTS")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Errorf("alert on a healthy understudy: %v", r.Metric)
	}
}

// ruleExprs returns the expressions of the alert rules file.
func ruleExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Expr == "" {
				t.Fatalf("%s: rule %s has no expr", path, r.Alert)
			}
			out = append(out, r.Expr)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", path)
	}
	return out
}

// dashboardExprs returns the PromQL of the dashboard's panels, with the
// dashboard's variables replaced, and the queries of its template
// variables (label_values, not PromQL: only their metric names count).
func dashboardExprs(t *testing.T, path string) (exprs, varQueries []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h", "$instance", ".*", "$source", ".*")
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					exprs = append(exprs, vars.Replace(tg.Expr))
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			json.Unmarshal(v.Query, &q.Query)
		}
		varQueries = append(varQueries, q.Query)
	}
	if len(exprs) == 0 || len(varQueries) == 0 {
		t.Fatalf("%s: %d panel expressions, %d variable queries", path, len(exprs), len(varQueries))
	}
	return exprs, varQueries
}

type dashPanel struct {
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

var (
	understudyName = regexp.MustCompile(`\bunderstudy_[a-z0-9_]+\b`)
	// Metrics of others that the rules use: Prometheus's own up and the
	// process collector's start time.
	otherNames = regexp.MustCompile(`\b(up|process_start_time_seconds)\b`)
)

// metricNames lists the metric names in a PromQL expression.
func metricNames(expr string) []string {
	return append(understudyName.FindAllString(expr, -1), otherNames.FindAllString(expr, -1)...)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// promServer is a Prometheus server started for a test.
type promServer struct {
	base string
}

// startPrometheus starts Prometheus with a scrape of target every second
// and the alert rules of rules, evaluated every second; it is stopped when
// the test ends.
func startPrometheus(t *testing.T, bin, target, rules string) *promServer {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: understudy
    static_configs:
      - targets: [%q]
`, rules, target)
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var out syncBuffer
	cmd := exec.Command(bin, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	p := &promServer{base: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30 s: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query evaluates an instant query now.
func (p *promServer) query(q string) ([]promSample, error) {
	var res struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &res); err != nil {
		return nil, err
	}
	if res.ResultType != "vector" {
		return nil, fmt.Errorf("%s: a %s, want a vector", q, res.ResultType)
	}
	var out []promSample
	if err := json.Unmarshal(res.Result, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// get reads an API endpoint's data into v.
func (p *promServer) get(path string, v any) error {
	resp, err := http.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: %v: %s", path, err, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s", r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// waitQuery waits until q returns a sample.
func (p *promServer) waitQuery(t *testing.T, q string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res, err := p.query(q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result for %s after %s", q, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitRules waits until Prometheus has evaluated every alert rule of the
// file and fails the test on any rule whose evaluation failed.
func (p *promServer) waitRules(t *testing.T, file string, timeout time.Duration) {
	t.Helper()
	want := len(ruleExprs(t, file))
	deadline := time.Now().Add(timeout)
	for {
		var data struct {
			Groups []struct {
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := p.get("/api/v1/rules?type=alert", &data); err != nil {
			t.Fatal(err)
		}
		n, evaluated := 0, 0
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health == "err" {
					t.Fatalf("alert rule %s fails to evaluate: %s", r.Name, r.LastError)
				}
				if r.Health == "ok" {
					evaluated++
				}
			}
		}
		if n != want {
			t.Fatalf("prometheus loaded %d alert rules, the file has %d", n, want)
		}
		if evaluated == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d alert rules evaluated after %s", evaluated, want, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

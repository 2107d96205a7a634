// Package grafana holds understudy's Grafana dashboard (understudy.json).
// The test here checks its structure; the test that runs its expressions
// against a real Prometheus scraping a running understudy is in
// cmd/understudy (TestPrometheusScrapesRuleMetrics).
package grafana

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Datasource *datasource `json:"datasource"`
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
	} `json:"targets"`
	Options struct {
		Content string `json:"content"`
	} `json:"options"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// TestDashboard: the dashboard is Grafana 10/11 JSON with its data source
// as a variable and a source variable from label_values; every query
// panel queries that data source and filters on the source; panels do not
// overlap; and it shows lag, throughput, restore windows, snapshots,
// drills, disk and the binlog server, with a note that upload lag comes
// with object storage.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("understudy.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("understudy.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: want both", d.UID, d.Title)
	}
	// Grafana 10.0 writes 38, 10.4 and 11.0 write 39, 11.3 writes 40.
	if d.SchemaVersion < 38 || d.SchemaVersion > 40 {
		t.Errorf("schemaVersion %d, want that of Grafana 10 or 11 (38 to 40)", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var o struct {
				Query string `json:"query"`
			}
			json.Unmarshal(v.Query, &o)
			q = o.Query
		}
		vars[v.Name] = v.Type + " " + q
	}
	if got, want := vars["DS_PROMETHEUS"], "datasource prometheus"; got != want {
		t.Errorf("variable DS_PROMETHEUS: %q, want %q", got, want)
	}
	if got := vars["source"]; !strings.HasPrefix(got, "query label_values(") || !strings.HasSuffix(got, ", source)") {
		t.Errorf("variable source: %q, want a label_values query of the source label", got)
	}

	ids := map[int]string{}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	var exprs, notes []string
	for _, p := range all {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		switch p.Type {
		case "row":
			continue
		case "text":
			notes = append(notes, p.Options.Content)
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: datasource %+v, want uid ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${DS_PROMETHEUS}" || tg.RefID == "" {
				t.Errorf("panel %q: a target with datasource %+v, refId %q", p.Title, tg.Datasource, tg.RefID)
			}
			if !strings.Contains(tg.Expr, `source=~"$source"`) {
				t.Errorf("panel %q: %s does not filter on the source variable", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	for i, a := range all {
		for _, b := range all[i+1:] {
			if overlap(a, b) {
				t.Errorf("panels %q %+v and %q %+v overlap", a.Title, a.GridPos, b.Title, b.GridPos)
			}
		}
	}

	joined := strings.Join(exprs, "\n")
	for what, metric := range map[string]string{
		"lag":                      "understudy_seconds_behind_primary",
		"throughput, transactions": "rate(understudy_archived_transactions_total",
		"throughput, bytes":        "rate(understudy_archived_transaction_bytes_total",
		"restore windows":          "understudy_restore_window_start_timestamp_seconds",
		"snapshots":                "understudy_snapshot_last_success_timestamp_seconds",
		"drills":                   "understudy_drill_last_success_timestamp_seconds",
		"drill RTO":                "understudy_drill_rto_seconds",
		"disk":                     "understudy_archive_filesystem_avail_bytes",
		"binlog-server replicas":   "understudy_binlog_server_replicas",
		"semi-sync":                "understudy_semi_sync_active",
		"store upload lag":         "understudy_store_upload_lag_seconds",
		"store backlog":            "understudy_store_behind_bytes",
	} {
		if !strings.Contains(joined, metric) {
			t.Errorf("the dashboard shows no %s (%s)", what, metric)
		}
	}
	if len(notes) != 0 {
		t.Errorf("text panels %q: want none (the upload lag has its panel now)", notes)
	}
}

// overlap reports whether two panels share a cell of the grid.
func overlap(a, b panel) bool {
	p, q := a.GridPos, b.GridPos
	return p.X < q.X+q.W && q.X < p.X+p.W && p.Y < q.Y+q.H && q.Y < p.Y+p.H
}

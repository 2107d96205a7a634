package statuspage

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
)

var now = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

func pos(t *testing.T, s string) understudy.Position {
	t.Helper()
	p, err := understudy.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

// fixture is three sources: a healthy one with a snapshot, a window and a
// passed drill; one that never had a snapshot or a drill and is not
// connected; and one whose drill failed, with a name that must be escaped.
func fixture(t *testing.T) []understudy.SourceStatus {
	return []understudy.SourceStatus{
		{
			Name: "orders", State: understudy.StateStreaming, Primary: "10.0.0.1:3306", PrimaryVersion: "10.11.6-MariaDB",
			Position: "1-1-500", LastCommit: ptr(now.Add(-2 * time.Second)), SecondsBehind: ptr(int64(0)),
			BytesArchived: 3 << 20, Transactions: 500, Generation: 1, ArchiveStart: "1-1-0", ArchiveStartReason: "oldest",
			ArchiveFile: "binlog.000002",
			RestoreWindows: []understudy.Window{{Generation: 1, Snapshot: "20250314T110000Z", From: pos(t, "1-1-100"),
				FromTime: now.Add(-time.Hour), To: pos(t, "1-1-500"), ToTime: now.Add(-2 * time.Second)}},
			LastSnapshot: &understudy.SnapshotStatus{ID: "20250314T110000Z", Position: pos(t, "1-1-100"), Finished: now.Add(-time.Hour), Bytes: 5 << 20},
			LastDrill: &understudy.DrillResult{Time: now.Add(-30 * time.Minute), OK: true, Proved: "snapshot 20250314T110000Z and the binlogs after it restore",
				Snapshot: "20250314T110000Z", Position: pos(t, "1-1-400"), LoadSeconds: 3, ReplaySeconds: 1.5, RTOSeconds: 4.5, Bytes: 7 << 20},
			LastError: "stream ended: EOF", LastErrorTime: ptr(now.Add(-3 * time.Hour)),
			Disk:  &understudy.DiskStatus{UsedBytes: 9 << 20, FreeBytes: 50 << 30, TotalBytes: 100 << 30},
			Store: &understudy.StoreStatus{Position: pos(t, "1-1-500"), LastUpload: ptr(now.Add(-time.Second))},
		},
		{
			Name: "billing", State: understudy.StateReconnecting, Primary: "10.0.0.2:3306",
			LastError: "connect to 10.0.0.2:3306: connection refused", LastErrorTime: ptr(now.Add(-5 * time.Second)),
			Store: &understudy.StoreStatus{Position: pos(t, "1-1-20"), LagSeconds: 95, BehindBytes: 3 << 20,
				LastError: "put s3://b/db/x: connection refused", LastErrorTime: ptr(now.Add(-2 * time.Second))},
		},
		{
			Name: "<b>evil</b>", State: understudy.StateStreaming, Primary: "10.0.0.3:3306", Position: "2-3-7", SecondsBehind: ptr(int64(0)),
			RestoreWindows: []understudy.Window{{Generation: 1, Snapshot: "s1", From: pos(t, "2-3-7"), FromTime: now.Add(-time.Hour), To: pos(t, "2-3-7"), ToTime: now.Add(-time.Hour), PointOnly: true}},
			LastDrill:      &understudy.DrillResult{Time: now.Add(-time.Minute), OK: false, Error: "chunk 3 of t1 differs <script>alert(1)</script>"},
		},
	}
}

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func newHandler(sts []understudy.SourceStatus) *Handler {
	h := New(func() []understudy.SourceStatus { return sts })
	h.Now = func() time.Time { return now }
	h.Host = "backup1"
	return h
}

// text strips the tags of an HTML fragment and folds its white space.
func text(html string) string {
	s := regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(html, " ")
	return strings.Join(strings.Fields(s), " ")
}

// cards returns the text of each source's card, in page order.
func cards(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`(?s)<section class="card [a-z]+" data-source="[^"]*">(.*?)</section>`).FindAllStringSubmatch(body, -1) {
		out = append(out, text(m[1]))
	}
	return out
}

// TestPage checks the server-rendered page (what a browser without
// JavaScript shows): the problems first, every field, the absent ones said
// so, escaping, and the headers that keep every asset inline.
func TestPage(t *testing.T) {
	resp, body := get(t, newHandler(fixture(t)), http.MethodGet, "/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cs := cards(t, body)
	if got, want := len(cs), 3; got != want {
		t.Fatalf("%d cards, want %d:\n%s", got, want, body)
	}
	// Worst first: the failed drill, then the reconnecting source, then the
	// healthy one.
	for i, want := range []string{"&lt;b&gt;evil&lt;/b&gt; streaming", "billing reconnecting", "orders streaming"} {
		if !strings.HasPrefix(cs[i], want) {
			t.Errorf("card %d: %q, want it to begin with %q", i, cs[i], want)
		}
	}
	evil, billing, orders := cs[0], cs[1], cs[2]
	for _, want := range []string{
		"GTID position 1-1-500", "Lag 0 s behind the primary", "Restore windows 2025-03-14 11:00:00 UTC to 2025-03-14 11:59:58 UTC GTID 1-1-100 to 1-1-500",
		"Last snapshot 20250314T110000Z, finished 2025-03-14 11:00:00 UTC (1.0 h ago), 5.0 MiB GTID 1-1-100",
		"Last drill passed 2025-03-14 11:30:00 UTC (30 min ago): RTO 4.5 s (load 3.0 s, replay 1.5 s), 7.0 MiB",
		"Last error stream ended: EOF recovered", "MariaDB 10.11.6-MariaDB", "50.0 GiB free of 100.0 GiB",
		"Store holds everything archived GTID 1-1-500 last upload",
	} {
		if !strings.Contains(orders, want) {
			t.Errorf("orders card lacks %q:\n%s", want, orders)
		}
	}
	if strings.Contains(orders, "Needs attention") {
		t.Errorf("healthy card flagged: %s", orders)
	}
	for _, want := range []string{
		"Needs attention: not connected to the primary; no restore window",
		"GTID position nothing archived yet", "Lag unknown (not connected to the primary)", "Restore windows none: nothing can be restored yet",
		"Last snapshot none yet", "Last drill never run", "Last error connect to 10.0.0.2:3306: connection refused 2025-03-14 11:59:55 UTC (5 s ago)",
		"Store 3.0 MiB behind for 95.0 s GTID 1-1-20", "put s3://b/db/x: connection refused",
	} {
		if !strings.Contains(billing, want) {
			t.Errorf("billing card lacks %q:\n%s", want, billing)
		}
	}
	for _, want := range []string{"Needs attention: last drill failed", "Last drill FAILED", "chunk 3 of t1 differs &lt;script&gt;alert(1)&lt;/script&gt;", "only (snapshot s1)"} {
		if !strings.Contains(evil, want) {
			t.Errorf("failed-drill card lacks %q:\n%s", want, evil)
		}
	}
	if strings.Contains(body, "<b>evil") || strings.Contains(body, "<script>alert") {
		t.Errorf("a source's name or error reached the page unescaped")
	}
	if !strings.Contains(body, `class="summary bad"`) || !strings.Contains(text(body), "2 of 3 sources need attention") {
		t.Errorf("summary: %s", text(body))
	}
	if !strings.Contains(body, `<meta http-equiv="refresh" content="5">`) {
		t.Errorf("no meta refresh for browsers without JavaScript")
	}

	// Every asset is inline, and the policy allows exactly those.
	for _, m := range regexp.MustCompile(`(?i)(?:src|href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(body, -1) {
		if u := m[1]; strings.Contains(u, ":") && !strings.HasPrefix(u, "data:") || strings.HasPrefix(u, "//") {
			t.Errorf("external asset %q", u)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, inline := range []string{"style", "script"} {
		m := regexp.MustCompile(`(?s)<` + inline + `>(.*?)</` + inline + `>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no inline %s", inline)
		}
		h := sha256.Sum256([]byte(m[1]))
		if want := inline + "-src 'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"; !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestPageAllHealthyAndEmpty(t *testing.T) {
	sts := fixture(t)[:1]
	_, body := get(t, newHandler(sts), http.MethodGet, "/")
	if !strings.Contains(body, `class="summary ok"`) || !strings.Contains(text(body), "orders is streaming; nothing needs attention.") {
		t.Errorf("summary of one healthy source: %s", text(body))
	}
	if !strings.Contains(body, "<title>understudy: all streaming</title>") {
		t.Errorf("title: %s", body)
	}
	_, body = get(t, newHandler(nil), http.MethodGet, "/")
	if !strings.Contains(text(body), "No sources are configured.") {
		t.Errorf("no sources: %s", text(body))
	}
}

func TestLag(t *testing.T) {
	st := fixture(t)[0]
	st.SecondsBehind = ptr(int64(125))
	_, body := get(t, newHandler([]understudy.SourceStatus{st}), http.MethodGet, "/")
	if c := cards(t, body); len(c) != 1 || !strings.Contains(c[0], "Needs attention: lagging 2 min 5 s") || !strings.Contains(c[0], "Lag 2 min 5 s behind the primary") {
		t.Errorf("lagging source: %v", c)
	}
}

func TestRoutes(t *testing.T) {
	h := newHandler(fixture(t))
	if resp, _ := get(t, h, http.MethodGet, "/nothing"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", resp.StatusCode)
	}
	if resp, _ := get(t, h, http.MethodPost, "/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
	if resp, body := get(t, h, http.MethodHead, "/"); resp.StatusCode != http.StatusOK || body != "" {
		t.Errorf("HEAD / = %d with %d bytes", resp.StatusCode, len(body))
	}
}

// TestWindowsAndGaps: the newest restore windows first, a long list cut
// short, and a recent gap flagged.
func TestWindowsAndGaps(t *testing.T) {
	st := fixture(t)[0]
	st.RestoreWindows = nil
	for i := 1; i <= 10; i++ {
		p := pos(t, fmt.Sprintf("1-1-%d", i*10))
		st.RestoreWindows = append(st.RestoreWindows, understudy.Window{Generation: 1, Snapshot: fmt.Sprintf("s%02d", i), From: p, To: p,
			FromTime: now.Add(-time.Duration(11-i) * 24 * time.Hour), ToTime: now.Add(-time.Duration(11-i) * 24 * time.Hour), PointOnly: true})
	}
	st.Gaps = []understudy.Gap{{Generation: 2, From: pos(t, "1-1-100"), To: pos(t, "1-1-150"), Detected: now.Add(-time.Hour), Reason: "purged"}}
	_, body := get(t, newHandler([]understudy.SourceStatus{st}), http.MethodGet, "/")
	c := cards(t, body)
	if len(c) != 1 {
		t.Fatalf("%d cards", len(c))
	}
	for _, want := range []string{
		"Needs attention: gap in the archive",
		"Restore windows 2025-03-13 12:00:00 UTC only (snapshot s10) GTID 1-1-100 2025-03-12 12:00:00 UTC only (snapshot s09)",
		"(snapshot s07) GTID 1-1-70 and 6 older (understudy info lists them all) Gap",
		"Gap before generation 2, found 2025-03-14 11:00:00 UTC (1.0 h ago): the transactions after GTID position 1-1-100 through 1-1-150 (50 in domain 1) were purged",
	} {
		if !strings.Contains(c[0], want) {
			t.Errorf("card lacks %q:\n%s", want, c[0])
		}
	}
	if strings.Contains(c[0], "(snapshot s06)") {
		t.Errorf("more than %d windows listed:\n%s", maxWindows, c[0])
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

// TestStatusPageInBrowser loads the status page of a running `understudy
// run` in headless Chromium and reads it as a person would, in one tab that
// is never reloaded: both sources streaming at their primaries' GTID
// positions with nothing restorable yet; then, by itself, the snapshots and
// restore windows once they exist; then the source whose primary was
// stopped, first on the page, not streaming, with the error; then a banner
// once understudy itself stops answering.
func TestStatusPageInBrowser(t *testing.T) {
	pa, pb := startPrimary(t, 1, 1), startPrimary(t, 2, 2)
	for _, p := range []*mariadbtest.Server{pa, pb} {
		p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	}
	pa.Exec(t, "CREATE DATABASE shop")
	pa.Exec(t, "CREATE TABLE shop.orders (id INT PRIMARY KEY, total INT)")
	pa.Exec(t, "INSERT INTO shop.orders SELECT seq, seq * 3 FROM shop.seq_1_to_100")
	pb.Exec(t, "CREATE DATABASE bill")
	pb.Exec(t, "CREATE TABLE bill.invoices (id INT PRIMARY KEY, paid BOOL)")
	pb.Exec(t, "INSERT INTO bill.invoices SELECT seq, seq % 2 FROM bill.seq_1_to_50")

	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "orders", p: pa, serverID: 9101}, testSource{name: "billing", p: pb, serverID: 9102})
	addr := freeAddr(t)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), `listen: "off"`, "listen: "+addr, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := startRun(t, cfg)
	for name, p := range map[string]*mariadbtest.Server{"orders": pa, "billing": pb} {
		waitArchived(t, filepath.Join(dir, "archive", name), p, 30*time.Second)
	}

	// Without JavaScript: the page as served.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(html), `data-source="orders"`) || !strings.Contains(string(html), `<meta http-equiv="refresh"`) {
		t.Fatalf("GET / = %d:\n%s", resp.StatusCode, html)
	}

	br := startBrowser(t, "http://"+addr+"/")
	br.eval(t, "window.understudyTestMarker = 1")
	posA, posB := pa.GTIDBinlogPos(t), pb.GTIDBinlogPos(t)
	br.waitFor(t, "both sources streaming at their primaries' positions, nothing restorable yet", 30*time.Second, func(v view) error {
		for _, c := range []struct{ name, pos string }{{"orders", posA}, {"billing", posB}} {
			if err := v.card(c.name).has(`(?i)^`+c.name+` streaming`, "GTID position "+c.pos, "Lag 0 s behind the primary",
				"Restore windows none: nothing can be restored yet", "Last snapshot none yet", "Last drill never run", "Last error none"); err != nil {
				return err
			}
		}
		if got := v.names(); got != "orders billing" {
			return fmt.Errorf("sources in the order %q, want the config's", got)
		}
		// Nothing can be restored yet: both need attention.
		return v.summary.has(`^2 of 2 sources need attention: orders \(no restore window\), billing \(no restore window\)\.$`)
	})

	// Snapshots, then more writes: the page shows them by itself.
	snaps := map[string]*snapshot.Manifest{}
	for name, p := range map[string]*mariadbtest.Server{"orders": pa, "billing": pb} {
		if code, _, e := runCmd(t, "snapshot", "--config", cfg, "--source", name); code != exitOK {
			t.Fatalf("snapshot of %s: exit %d: %s", name, code, e)
		}
		l, err := snapshot.List(filepath.Join(dir, "archive", name, "snapshots"))
		if err != nil || len(l) != 1 {
			t.Fatalf("snapshots of %s: %d, %v", name, len(l), err)
		}
		snaps[name] = l[0].Manifest
		if got, want := l[0].Manifest.Position.String(), p.GTIDBinlogPos(t); got != want {
			t.Fatalf("snapshot of %s at %s, primary at %s", name, got, want)
		}
	}
	pa.Exec(t, "UPDATE shop.orders SET total = total + 1 WHERE id < 10")
	pa.Exec(t, "INSERT INTO shop.orders VALUES (1000, 1)")
	waitArchived(t, filepath.Join(dir, "archive", "orders"), pa, 30*time.Second)
	posA = pa.GTIDBinlogPos(t)
	br.waitFor(t, "the snapshots and restore windows", 30*time.Second, func(v view) error {
		for _, c := range []struct{ name, pos string }{{"orders", posA}, {"billing", posB}} {
			sn := snaps[c.name]
			if err := v.card(c.name).has(`(?i)^`+c.name+` streaming`, "GTID position "+c.pos,
				"Restore windows "+stampRE+" to "+stampRE+" GTID "+sn.Position.String()+" to "+c.pos+" Last snapshot",
				"Last snapshot "+sn.ID+", finished "+stampRE+" \\(\\d+ s ago\\), [0-9.]+ (B|[KMG]iB) GTID "+sn.Position.String(),
				"Last drill never run"); err != nil {
				return err
			}
			if strings.Contains(string(v.card(c.name)), "Needs attention") {
				return fmt.Errorf("%s still needs attention: %s", c.name, v.card(c.name))
			}
		}
		return v.summary.has(`^All 2 sources are streaming; nothing needs attention\.$`)
	})

	// The billing primary goes away: billing comes first, not streaming,
	// with the error /status reports.
	pb.Stop(t)
	var lastErr string
	br.waitFor(t, "billing first, not streaming, with its error", 30*time.Second, func(v view) error {
		st := httpStatus(t, addr)
		lastErr = st["billing"].LastError
		if lastErr == "" {
			return fmt.Errorf("/status has no error for billing yet: %+v", st["billing"])
		}
		if got := v.names(); got != "billing orders" {
			return fmt.Errorf("sources in the order %q, want billing first", got)
		}
		if err := v.card("billing").has(`(?i)^billing (reconnecting|error) `, "Needs attention: ", "Lag unknown",
			"Last error "+regexp.QuoteMeta(lastErr)+" "+stampRE); err != nil {
			return err
		}
		if err := v.card("orders").has(`(?i)^orders streaming`, "GTID position "+posA); err != nil {
			return err
		}
		if !strings.HasPrefix(v.Title, "⚠") && !strings.HasPrefix(v.Title, "✖") {
			return fmt.Errorf("title %q does not flag the problem", v.Title)
		}
		return v.summary.has("1 of 2 sources needs attention: billing")
	})
	t.Logf("billing's error on the page: %s", lastErr)

	// understudy stops: the page says it is out of date.
	stop()
	br.waitFor(t, "a banner saying understudy does not answer", 30*time.Second, func(v view) error {
		if err := v.conn.has("understudy has not answered since .*: what is shown below is out of date"); err != nil {
			return err
		}
		return v.card("billing").has(`(?i)^billing (reconnecting|error) `)
	})
	if got := br.eval(t, "String(window.understudyTestMarker)"); got != "1" {
		t.Fatalf("the page was reloaded (marker %q): it must update itself in place", got)
	}
}

// stampRE matches a time as the page writes it.
const stampRE = `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC`

func httpStatus(t *testing.T, addr string) map[string]understudy.SourceStatus {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sts []understudy.SourceStatus
	if err := json.NewDecoder(resp.Body).Decode(&sts); err != nil {
		t.Fatal(err)
	}
	out := map[string]understudy.SourceStatus{}
	for _, s := range sts {
		out[s.Name] = s
	}
	return out
}

// view is what the page shows: its title, banners and each source's card,
// as the text a person reads (innerText, white space folded).
type view struct {
	Title   string
	summary text
	conn    text
	cards   []struct{ name, text string }
}

type text string

// has checks that t matches every regular expression.
func (t text) has(res ...string) error {
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(string(t)) {
			return fmt.Errorf("%q does not match %q", t, re)
		}
	}
	return nil
}

func (v view) card(name string) text {
	for _, c := range v.cards {
		if c.name == name {
			return text(c.text)
		}
	}
	return ""
}

func (v view) names() string {
	var ns []string
	for _, c := range v.cards {
		ns = append(ns, c.name)
	}
	return strings.Join(ns, " ")
}

// browser is a headless Chromium with one tab, driven over the DevTools
// protocol on a pipe (--remote-debugging-pipe: commands go to its fd 3,
// replies come from its fd 4, each a JSON message ended by a NUL byte).
type browser struct {
	in      *os.File
	msgs    chan []byte
	id      int
	session string
}

// startBrowser opens url in a new headless Chromium. A missing Chromium
// fails the test: scripts/test.sh installs it.
func startBrowser(t *testing.T, url string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium is needed to test the status page (scripts/test.sh installs the chromium package): %v", err)
	}
	profile, err := os.MkdirTemp("", "understudy-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--no-default-browser-check", "--remote-debugging-pipe", "--user-data-dir="+profile, "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, outW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr mariadbtest.LogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	cmdR.Close()
	outW.Close()
	b := &browser{in: cmdW, msgs: make(chan []byte, 64)}
	go func() {
		defer close(b.msgs)
		r := bufio.NewReader(outR)
		for {
			m, err := r.ReadBytes(0)
			if err != nil {
				return
			}
			b.msgs <- m[:len(m)-1]
		}
	}()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		b.send("Browser.close", nil, "")
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group of the Chromium started here
			<-exited
		}
		cmdW.Close()
		outR.Close()
		os.RemoveAll(profile)
		if t.Failed() {
			t.Logf("chromium's stderr:\n%s", stderr.String())
		}
	})

	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call("Target.createTarget", map[string]any{"url": url}, &target); err != nil {
		t.Fatalf("open %s in chromium: %v\n%s", url, err, stderr.String())
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call("Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		t.Fatalf("attach to the tab: %v", err)
	}
	b.session = att.SessionID
	deadline := time.Now().Add(30 * time.Second)
	// The tab shows about:blank until the page has loaded.
	loaded := fmt.Sprintf(`String(location.href === %q && document.readyState === "complete" && !!document.getElementById("page"))`, url)
	for b.eval(t, loaded) != "true" {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not load in 30 s", url)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return b
}

func (b *browser) send(method string, params any, session string) (int, error) {
	b.id++
	m := map[string]any{"id": b.id, "method": method}
	if params != nil {
		m["params"] = params
	}
	if session != "" {
		m["sessionId"] = session
	}
	msg, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	_, err = b.in.Write(append(msg, 0))
	return b.id, err
}

// call sends a command to the browser (or to the tab, once attached) and
// decodes its result into out; events are skipped.
func (b *browser) call(method string, params, out any) error {
	id, err := b.send(method, params, b.session)
	if err != nil {
		return err
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-b.msgs:
			if !ok {
				return fmt.Errorf("%s: chromium closed the pipe", method)
			}
			var r struct {
				ID     int             `json:"id"`
				Result json.RawMessage `json:"result"`
				Error  *struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(m, &r); err != nil {
				return fmt.Errorf("%s: %v: %s", method, err, m)
			}
			if r.ID != id {
				continue
			}
			if r.Error != nil {
				return fmt.Errorf("%s: %s", method, r.Error.Message)
			}
			return json.Unmarshal(r.Result, out)
		case <-timeout:
			return fmt.Errorf("%s: no answer from chromium in 30 s", method)
		}
	}
}

// eval evaluates a JavaScript expression in the tab and returns its value
// as a string.
func (b *browser) eval(t *testing.T, expr string) string {
	t.Helper()
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r); err != nil {
		t.Fatal(err)
	}
	if r.Exception != nil {
		t.Fatalf("%s: %s %s\npage: %s", expr, r.Exception.Text, r.Exception.Exception.Description, b.html(t))
	}
	s, _ := r.Result.Value.(string)
	return s
}

// html returns the tab's document, for failure messages.
func (b *browser) html(t *testing.T) string {
	var r struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
	}
	if err := b.call("Runtime.evaluate", map[string]any{"expression": "document.documentElement.outerHTML", "returnByValue": true}, &r); err != nil {
		return err.Error()
	}
	return r.Result.Value
}

// read returns what the page shows now.
func (b *browser) read(t *testing.T) view {
	t.Helper()
	const js = `JSON.stringify({
		title: document.title,
		summary: (document.getElementById("summary") || {}).innerText || "",
		conn: document.getElementById("conn").hidden ? "" : document.getElementById("conn").innerText,
		cards: Array.from(document.querySelectorAll("section.card")).map(c => [c.getAttribute("data-source"), c.innerText])
	})`
	var raw struct {
		Title, Summary, Conn string
		Cards                [][2]string
	}
	if err := json.Unmarshal([]byte(b.eval(t, js)), &raw); err != nil {
		t.Fatal(err)
	}
	fold := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	v := view{Title: raw.Title, summary: text(fold(raw.Summary)), conn: text(fold(raw.Conn))}
	for _, c := range raw.Cards {
		v.cards = append(v.cards, struct{ name, text string }{c[0], fold(c[1])})
	}
	return v
}

// waitFor reads the page until check passes, without ever reloading it.
func (b *browser) waitFor(t *testing.T, what string, timeout time.Duration, check func(view) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := b.read(t)
		err := check(v)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not show %s within %s: %v\ntitle %q, summary %q, banner %q, cards %q", what, timeout, err, v.Title, v.summary, v.conn, v.cards)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

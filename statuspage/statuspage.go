// Package statuspage serves the human status page of `understudy run`: one
// card per source with its state, GTID position, lag, restore windows, last
// snapshot, last drill and last error, the sources that need attention
// first.
//
// The page is rendered on the server with html/template, so it reads the
// same without JavaScript (a <noscript> meta refresh reloads it). With
// JavaScript, a small inline script fetches the page again every few
// seconds and swaps its content in place, and says so when understudy stops
// answering. Everything is inline: no external asset is ever loaded, and a
// Content-Security-Policy with the hashes of the inline style and script
// forbids any other.
package statuspage

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/understudy-db/understudy"
)

// Defaults of a Handler's tuning fields.
const (
	DefaultRefresh = 5 * time.Second
	DefaultLagWarn = time.Minute
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed style.css
	styleCSS string
	//go:embed script.js
	scriptJS string
)

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// Handler serves the status page at "/" (and 404 elsewhere).
type Handler struct {
	// Status returns the status of every source, in the config's order.
	Status func() []understudy.SourceStatus
	// Refresh is how often the page updates itself.
	Refresh time.Duration
	// LagWarn is the lag above which a streaming source needs attention.
	LagWarn time.Duration
	// Host names the machine in the page's heading.
	Host string
	// Now is the clock (tests set it).
	Now func() time.Time
	// Log, if set, records pages that could not be written.
	Log *slog.Logger

	csp string
}

// New returns a Handler with default tuning that shows what status returns.
func New(status func() []understudy.SourceStatus) *Handler {
	host, _ := os.Hostname()
	return &Handler{Status: status, Refresh: DefaultRefresh, LagWarn: DefaultLagWarn, Host: host, Now: time.Now, csp: policy()}
}

// policy is the page's Content-Security-Policy: nothing but its own inline
// style and script (by hash), its data: favicon, and fetches of itself.
func policy() string {
	hash := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"
	}
	return "default-src 'none'; style-src " + hash(styleCSS) + "; script-src " + hash(scriptJS) +
		"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	refresh := h.Refresh
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	lagWarn := h.LagWarn
	if lagWarn <= 0 {
		lagWarn = DefaultLagWarn
	}
	csp := h.csp
	if csp == "" {
		csp = policy()
	}
	p := build(h.Status(), now(), lagWarn)
	p.Host = h.Host
	p.Refresh = int((refresh + time.Second - 1) / time.Second)
	p.Style, p.Script = template.CSS(styleCSS), template.JS(scriptJS)

	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		if h.Log != nil {
			h.Log.Error("status page", "err", err)
		}
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", csp)
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(buf.Bytes())
}

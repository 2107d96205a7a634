package drill

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the drill metrics of `understudy run`, registered on an
// injected registry. The gauges are read from each source's drill.json
// when they are scraped, so that a drill run from the command line shows
// as one run on run's schedule does. A source that never drilled has no
// gauges (only its failure counter, at 0).
type Metrics struct {
	lastSuccess, lastRun, lastOK, rto *prometheus.GaugeVec
	failures                          *prometheus.CounterVec

	dirs  map[string]string // source → archive directory
	since time.Time

	mu   sync.Mutex
	seen map[string]time.Time // source → the time of the last result counted
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics creates the metrics of the sources whose archive directories
// dirs holds (by source name) and registers them on reg (if not nil).
func NewMetrics(reg prometheus.Registerer, dirs map[string]string) *Metrics {
	m := &Metrics{
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_drill_last_success_timestamp_seconds", Help: "When the last drill that passed began.",
		}, []string{"source"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_drill_last_run_timestamp_seconds", Help: "When the last drill began, passed or failed.",
		}, []string{"source"}),
		lastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_drill_last_ok", Help: "1 when the last drill passed, 0 when it failed.",
		}, []string{"source"}),
		rto: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_drill_rto_seconds", Help: "Load plus replay time of the last drill that passed.",
		}, []string{"source"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_drill_failures_total", Help: "Drills that failed (or, on run's schedule, could not begin) while run ran, scheduled or run from the command line.",
		}, []string{"source"}),
		dirs: dirs, since: time.Now(), seen: map[string]time.Time{},
	}
	for name := range dirs {
		m.failures.WithLabelValues(name).Add(0)
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector: it reads every source's record
// first.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for name := range m.dirs {
		m.Refresh(name)
	}
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.lastSuccess, m.lastRun, m.lastOK, m.rto, m.failures}
}

// Refresh reads a source's drill.json into the metrics. A failed drill
// that began after the metrics were created and was not counted yet is
// counted.
func (m *Metrics) Refresh(source string) {
	r, ok, err := ReadRecord(m.dirs[source])
	if err != nil || !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	last := r.Last
	m.lastRun.WithLabelValues(source).Set(float64(last.Time.UnixNano()) / 1e9)
	ok1 := 0.0
	if last.OK {
		ok1 = 1
	}
	m.lastOK.WithLabelValues(source).Set(ok1)
	if s := r.LastSuccess; s != nil {
		m.lastSuccess.WithLabelValues(source).Set(float64(s.Time.UnixNano()) / 1e9)
		m.rto.WithLabelValues(source).Set(s.RTOSeconds)
	}
	if !last.OK && !last.Time.Before(m.since) && last.Time.After(m.seen[source]) {
		m.failures.WithLabelValues(source).Inc()
	}
	if last.Time.After(m.seen[source]) {
		m.seen[source] = last.Time
	}
}

// Failed counts a scheduled drill that could not begin (nothing was
// recorded).
func (m *Metrics) Failed(source string) {
	m.failures.WithLabelValues(source).Inc()
}

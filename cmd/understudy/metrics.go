package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-db/understudy/config"
)

// registerRunMetrics registers the metrics of run that come from its
// config and from what is on disk rather than from a running component:
// the configured snapshot and drill intervals (which the alert rules
// compare the last success with) and the restore windows. schedules says
// whether run starts its schedules (not with --until-caught-up): without
// them, no interval is exposed, so that no rule expects a snapshot or a
// drill. docs/metrics.md describes each metric.
func registerRunMetrics(reg prometheus.Registerer, cfg *config.Config, schedules bool) {
	snapEvery := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "understudy_snapshot_interval_seconds",
		Help: "The source's snapshot.every: a snapshot is due this long after the last one. Absent when run takes no scheduled snapshots of the source.",
	}, []string{"source"})
	drillEvery := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "understudy_drill_interval_seconds",
		Help: "The source's drill.every: a drill is due this long after the last one. Absent when run drills the source on no schedule.",
	}, []string{"source"})
	if schedules {
		for _, s := range cfg.Sources {
			// As startSchedules: snapshots are scheduled for a source with
			// a snapshot block whose every is set.
			if s.Snapshot != nil && s.Snapshot.Every.D() > 0 {
				snapEvery.WithLabelValues(s.Name).Set(s.Snapshot.Every.D().Seconds())
			}
			if s.Drill != nil && s.Drill.Every.D() > 0 {
				drillEvery.WithLabelValues(s.Name).Set(s.Drill.Every.D().Seconds())
			}
		}
	}
	reg.MustRegister(snapEvery, drillEvery, newWindowCollector(cfg))
}

// windowCollector describes each source's restore windows, computed from
// the archive and the snapshots on disk when scraped (as /status does).
type windowCollector struct {
	cfg               *config.Config
	start, end, count *prometheus.Desc
}

var _ prometheus.Collector = (*windowCollector)(nil)

func newWindowCollector(cfg *config.Config) *windowCollector {
	return &windowCollector{
		cfg: cfg,
		start: prometheus.NewDesc("understudy_restore_window_start_timestamp_seconds",
			"The oldest point a restore can reach: the start of the source's oldest restore window. Absent while there is no window.", []string{"source"}, nil),
		end: prometheus.NewDesc("understudy_restore_window_end_timestamp_seconds",
			"The newest point a restore can reach: the commit time of the last durable transaction of the source's newest restore window. Absent while there is no window.", []string{"source"}, nil),
		count: prometheus.NewDesc("understudy_restore_windows",
			"The source's restore windows: 0 while nothing can be restored (no snapshot yet), more than 1 after a gap or with point-only snapshots.", []string{"source"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *windowCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.start
	ch <- c.end
	ch <- c.count
}

// Collect implements prometheus.Collector. A source whose windows cannot
// be read (its archive is being created, say) is left out of this scrape.
func (c *windowCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.cfg.Sources {
		ws, _, err := sourceWindows(c.cfg, s.Name)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(len(ws)), s.Name)
		if len(ws) == 0 {
			continue
		}
		from, to := ws[0].FromTime, ws[0].ToTime
		for _, w := range ws[1:] {
			if w.FromTime.Before(from) {
				from = w.FromTime
			}
			if w.ToTime.After(to) {
				to = w.ToTime
			}
		}
		ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, float64(from.UnixNano())/1e9, s.Name)
		ch <- prometheus.MustNewConstMetric(c.end, prometheus.GaugeValue, float64(to.UnixNano())/1e9, s.Name)
	}
}

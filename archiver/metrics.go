package archiver

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Prometheus metrics of all archivers, registered on an
// injected registry.
type Metrics struct {
	Transactions  *prometheus.CounterVec
	Bytes         *prometheus.GaugeVec
	SecondsBehind *prometheus.GaugeVec
	LastCommit    *prometheus.GaugeVec
	Reconnects    *prometheus.CounterVec
	Up            *prometheus.GaugeVec
	Fsync         *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_archived_transactions_total", Help: "Transactions archived since start.",
		}, []string{"source"}),
		Bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_archived_bytes", Help: "Durable size of the source's archive.",
		}, []string{"source"}),
		SecondsBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_seconds_behind_primary", Help: "How far the archive lags the primary; -1 when not connected.",
		}, []string{"source"}),
		LastCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_last_archived_commit_timestamp_seconds", Help: "Commit time of the last durable transaction.",
		}, []string{"source"}),
		Reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_reconnects_total", Help: "Connection attempts after the first.",
		}, []string{"source"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_source_streaming", Help: "1 while the source streams, 0 otherwise.",
		}, []string{"source"}),
		Fsync: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "understudy_fsync_seconds", Help: "Duration of archive syncs.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.Transactions, m.Bytes, m.SecondsBehind, m.LastCommit, m.Reconnects, m.Up, m.Fsync)
	}
	return m
}

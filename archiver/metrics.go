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
	Gaps          *prometheus.CounterVec
	Generation    *prometheus.GaugeVec
	DiskFull      *prometheus.CounterVec
	DiskUsed      *prometheus.GaugeVec
	DiskFree      *prometheus.GaugeVec
	DiskSize      *prometheus.GaugeVec
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
		Gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_archive_gaps_total", Help: "Gaps found: the primary purged binlogs before they were archived, and a new generation began.",
		}, []string{"source"}),
		Generation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_archive_generation", Help: "The archive's current generation.",
		}, []string{"source"}),
		DiskFull: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_archive_disk_full_total", Help: "Times archiving paused because the archive's disk was full.",
		}, []string{"source"}),
		DiskUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_source_disk_used_bytes", Help: "Bytes used by the source's directory (archive and snapshots).",
		}, []string{"source"}),
		DiskFree: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_archive_filesystem_avail_bytes", Help: "Free bytes (for unprivileged users) on the archive's filesystem.",
		}, []string{"source"}),
		DiskSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_archive_filesystem_size_bytes", Help: "Size of the archive's filesystem.",
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.Transactions, m.Bytes, m.SecondsBehind, m.LastCommit, m.Reconnects, m.Up, m.Fsync,
			m.Gaps, m.Generation, m.DiskFull, m.DiskUsed, m.DiskFree, m.DiskSize)
	}
	return m
}

package archiver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-db/understudy"
)

// Metrics are the Prometheus metrics of all archivers, registered on an
// injected registry. docs/metrics.md describes each one.
type Metrics struct {
	Transactions *prometheus.CounterVec
	// TransactionBytes counts the bytes of the archived transactions'
	// events (throughput; Bytes is the archive's size, which pruning
	// lowers).
	TransactionBytes *prometheus.CounterVec
	Bytes            *prometheus.GaugeVec
	SecondsBehind    *prometheus.GaugeVec
	LastCommit       *prometheus.GaugeVec
	Reconnects       *prometheus.CounterVec
	Up               *prometheus.GaugeVec
	// State is 1 for the source's current state and 0 for the others.
	State *prometheus.GaugeVec
	// SemiSyncActive and SemiSyncFallbacks exist for sources with
	// semi_sync: true only.
	SemiSyncActive    *prometheus.GaugeVec
	SemiSyncFallbacks *prometheus.CounterVec
	Fsync             *prometheus.HistogramVec
	Gaps              *prometheus.CounterVec
	Generation        *prometheus.GaugeVec
	DiskFull          *prometheus.CounterVec
	DiskUsed          *prometheus.GaugeVec
	DiskFree          *prometheus.GaugeVec
	DiskSize          *prometheus.GaugeVec
}

// states are the values of understudy_source_state's state label.
var states = []understudy.State{understudy.StateStarting, understudy.StateStreaming, understudy.StateReconnecting, understudy.StateError, understudy.StateStopped}

// NewMetrics creates the metrics and registers them on reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_archived_transactions_total", Help: "Transactions archived since start.",
		}, []string{"source"}),
		TransactionBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_archived_transaction_bytes_total", Help: "Bytes of binlog events of the transactions archived since start.",
		}, []string{"source"}),
		Bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_archived_bytes", Help: "Durable size of the source's archive.",
		}, []string{"source"}),
		SecondsBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_seconds_behind_primary", Help: "How far the archive lags the primary; -1 when not connected.",
		}, []string{"source"}),
		LastCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_last_archived_commit_timestamp_seconds", Help: "Commit time of the last durable transaction (0 while the archive holds none).",
		}, []string{"source"}),
		Reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_reconnects_total", Help: "Connection attempts after the first.",
		}, []string{"source"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_source_streaming", Help: "1 while the source streams, 0 otherwise.",
		}, []string{"source"}),
		State: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_source_state", Help: "1 for the source's current state (starting, streaming, reconnecting, error, stopped), 0 for the others.",
		}, []string{"source", "state"}),
		SemiSyncActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_semi_sync_active", Help: "Sources with semi_sync: true: 1 while the source streams as a semi-sync replica (the primary had rpl_semi_sync_master_enabled=ON when the session began), 0 while it streams asynchronously or does not stream.",
		}, []string{"source"}),
		SemiSyncFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_semi_sync_fallbacks_total", Help: "Sources with semi_sync: true: sessions that began asynchronously (the primary had rpl_semi_sync_master_enabled=OFF) when the previous one was semi-sync or none had begun.",
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
		reg.MustRegister(m.Transactions, m.TransactionBytes, m.Bytes, m.SecondsBehind, m.LastCommit, m.Reconnects, m.Up,
			m.State, m.SemiSyncActive, m.SemiSyncFallbacks, m.Fsync, m.Gaps, m.Generation, m.DiskFull, m.DiskUsed, m.DiskFree, m.DiskSize)
	}
	return m
}

// init makes a source's series exist from the start: its counters at 0 (so
// that increase() sees the first event), and its state starting.
func (m *Metrics) init(src understudy.Source) {
	name := src.Name
	for _, c := range []*prometheus.CounterVec{m.Transactions, m.TransactionBytes, m.Reconnects, m.Gaps, m.DiskFull} {
		c.WithLabelValues(name)
	}
	m.setState(name, understudy.StateStarting)
	m.Up.WithLabelValues(name).Set(0)
	m.SecondsBehind.WithLabelValues(name).Set(-1)
	if src.SemiSync {
		m.SemiSyncActive.WithLabelValues(name).Set(0)
		m.SemiSyncFallbacks.WithLabelValues(name)
	}
}

// setState sets understudy_source_state: 1 for st, 0 for the other states.
func (m *Metrics) setState(name string, st understudy.State) {
	for _, s := range states {
		v := 0.0
		if s == st {
			v = 1
		}
		m.State.WithLabelValues(name, string(s)).Set(v)
	}
}

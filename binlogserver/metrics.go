package binlogserver

import "github.com/prometheus/client_golang/prometheus"

// The kinds of errors a binlog server sends replicas, the kind label of
// understudy_binlog_server_errors_total.
const (
	// KindCorrupt: the archive is damaged (a bad CRC32, a short read, an
	// event running past its transaction, a damaged index).
	KindCorrupt = "corrupt"
	// KindRead: the archive could not be read (an I/O error).
	KindRead = "read"
	// KindGap: the stream reached a gap between generations.
	KindGap = "gap"
	// KindPosition: the replica's GTID position is not in the archive.
	KindPosition = "position"
	// KindRequest: the replica asked for what the server does not serve
	// (file/position replication, its own server_id, a malformed request).
	KindRequest = "request"
)

var kinds = []string{KindCorrupt, KindRead, KindGap, KindPosition, KindRequest}

// Metrics are the Prometheus metrics of all binlog servers of a process,
// registered on an injected registry.
type Metrics struct {
	// Errors counts the errors (ERR 1236) sent to replicas, by source and
	// kind.
	Errors *prometheus.CounterVec
	// LastError is the time of the last error sent to a replica.
	LastError *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_binlog_server_errors_total",
			Help: "Errors sent to replicas by the binlog server (ERR 1236, the replica stops), by kind: corrupt, read, gap, position, request.",
		}, []string{"source", "kind"}),
		LastError: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_binlog_server_last_error_timestamp_seconds",
			Help: "Time of the last error the binlog server sent a replica.",
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.Errors, m.LastError)
	}
	return m
}

// init makes every kind of a source visible at 0, so that increase() sees
// the first error.
func (m *Metrics) init(source string) {
	for _, k := range kinds {
		m.Errors.WithLabelValues(source, k)
	}
}

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

// The reasons a connection is refused, the reason label of
// understudy_binlog_server_refused_connections_total.
const (
	// ReasonLimit: MaxConns connections were open already.
	ReasonLimit = "limit"
	// ReasonTimeout: no login within the handshake timeout.
	ReasonTimeout = "timeout"
	// ReasonLogin: a wrong user or password.
	ReasonLogin = "login"
	// ReasonTLS: a login without TLS where TLS is required.
	ReasonTLS = "tls"
	// ReasonHandshake: the client closed the connection or sent a
	// malformed handshake before it logged in.
	ReasonHandshake = "handshake"
)

var reasons = []string{ReasonLimit, ReasonTimeout, ReasonLogin, ReasonTLS, ReasonHandshake}

// Metrics are the Prometheus metrics of all binlog servers of a process,
// registered on an injected registry.
type Metrics struct {
	// Errors counts the errors (ERR 1236) sent to replicas, by source and
	// kind.
	Errors *prometheus.CounterVec
	// LastError is the time of the last error sent to a replica.
	LastError *prometheus.GaugeVec
	// Refused counts the connections closed before or at login, by source
	// and reason.
	Refused *prometheus.CounterVec
	// Conns is the number of connections open, logged in or not.
	Conns *prometheus.GaugeVec
	// Replicas is the number of replicas streaming: connections whose
	// COM_BINLOG_DUMP passed its checks.
	Replicas *prometheus.GaugeVec
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
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_binlog_server_refused_connections_total",
			Help: "Connections the binlog server closed before or at login, by reason: limit (too many open), timeout (no login in time), login (wrong user or password), tls (TLS required), handshake (closed or malformed before login).",
		}, []string{"source", "reason"}),
		Conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_binlog_server_connections",
			Help: "Connections open to the binlog server, logged in or not.",
		}, []string{"source"}),
		Replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_binlog_server_replicas",
			Help: "Replicas streaming from the binlog server (their COM_BINLOG_DUMP was accepted).",
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.Errors, m.LastError, m.Refused, m.Conns, m.Replicas)
	}
	return m
}

// init makes every kind and reason of a source visible at 0, so that increase() sees
// the first error.
func (m *Metrics) init(source string) {
	for _, k := range kinds {
		m.Errors.WithLabelValues(source, k)
	}
	for _, r := range reasons {
		m.Refused.WithLabelValues(source, r)
	}
	m.Conns.WithLabelValues(source)
	m.Replicas.WithLabelValues(source)
}

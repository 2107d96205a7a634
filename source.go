package understudy

import (
	"crypto/tls"
	"net"
	"strconv"
	"time"
)

// Source is one MariaDB primary that understudy follows as a replica.
type Source struct {
	Name     string
	Host     string
	Port     int
	User     string
	Password string
	// ServerID is the server_id understudy registers with on this primary.
	ServerID uint32
	// SemiSync acknowledges transactions only once they are durable in the
	// archive, when the primary has semi-sync enabled.
	SemiSync bool
	// Heartbeat is the period of the primary's heartbeats when idle.
	Heartbeat time.Duration
	// TLS, if not nil, is used for the connection.
	TLS *tls.Config
}

// Addr returns host:port.
func (s Source) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// State is what a source's archiver is doing.
type State string

// The states of a source.
const (
	StateStarting     State = "starting"
	StateStreaming    State = "streaming"
	StateReconnecting State = "reconnecting"
	StateError        State = "error"
	StateStopped      State = "stopped"
)

// SourceStatus is the status of one source, in the spirit of MariaDB's
// SHOW ALL SLAVES STATUS.
type SourceStatus struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	// Primary is host:port of the source.
	Primary string `json:"primary"`
	// Position is the last durably archived GTID position.
	Position string `json:"gtid_position"`
	// LastCommit is the commit time of the last archived transaction.
	LastCommit *time.Time `json:"last_commit,omitempty"`
	// SecondsBehind is how far the archive is behind the primary; nil when
	// unknown (not connected).
	SecondsBehind *int64     `json:"seconds_behind_primary"`
	BytesArchived int64      `json:"bytes_archived"`
	Transactions  int64      `json:"transactions_archived_since_start"`
	Reconnects    int64      `json:"reconnects"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorTime *time.Time `json:"last_error_time,omitempty"`
	// ServeLastError is the last error the source's binlog server sent a
	// replica (a damaged archive, say), and ServeLastErrorTime when.
	ServeLastError     string     `json:"serve_last_error,omitempty"`
	ServeLastErrorTime *time.Time `json:"serve_last_error_time,omitempty"`
	// PrimaryBinlog is the primary's binlog file being read.
	PrimaryBinlog  string `json:"primary_binlog,omitempty"`
	PrimaryVersion string `json:"primary_version,omitempty"`
	ArchiveFile    string `json:"archive_file,omitempty"`
	// Generation is the archive's current generation; ArchiveStart is the
	// position it begins at and ArchiveStartReason why.
	Generation         int    `json:"generation,omitempty"`
	ArchiveStart       string `json:"archive_start"`
	ArchiveStartReason string `json:"archive_start_reason,omitempty"`
	// Gaps are the stretches the archive lacks because the primary purged
	// them before they were archived.
	Gaps []Gap `json:"gaps,omitempty"`
	// RestoreWindows are the points in time that can be restored.
	RestoreWindows []Window `json:"restore_windows"`
	// Disk is the archive filesystem's space, when known.
	Disk *DiskStatus `json:"disk,omitempty"`
	// LastSnapshot is the source's newest snapshot, when it has one.
	LastSnapshot *SnapshotStatus `json:"last_snapshot,omitempty"`
	// LastDrill is the outcome of the source's last restore drill, when
	// one ran (on run's schedule or from the command line).
	LastDrill *DrillResult `json:"last_drill,omitempty"`
	// Store is the shipping of the source to the store (storage.s3).
	Store *StoreStatus `json:"store,omitempty"`
	// Warnings need a human's attention (low disk space, say).
	Warnings []string `json:"warnings,omitempty"`
}

// SnapshotStatus describes a source's newest snapshot.
type SnapshotStatus struct {
	ID       string    `json:"id"`
	Position Position  `json:"gtid_position"`
	Finished time.Time `json:"finished"`
	Bytes    int64     `json:"bytes"`
}

// DrillResult is the outcome of a restore drill (`understudy drill`): a
// snapshot restored on a scratch server, verified, and the archive
// replayed onto it, verified again.
type DrillResult struct {
	Time time.Time `json:"time"`
	OK   bool      `json:"ok"`
	// Error is why the drill failed, in one line.
	Error string `json:"error,omitempty"`
	// Proved says in one line what the drill proved.
	Proved string `json:"proved,omitempty"`
	// Snapshot is the snapshot restored; Position the GTID position the
	// drill replayed to and verified.
	Snapshot string   `json:"snapshot,omitempty"`
	Position Position `json:"gtid_position"`
	// LoadSeconds and ReplaySeconds make up the RTO.
	LoadSeconds   float64 `json:"load_seconds"`
	ReplaySeconds float64 `json:"replay_seconds"`
	RTOSeconds    float64 `json:"rto_seconds"`
	// Bytes is the size of the data restored.
	Bytes        int64 `json:"data_bytes"`
	Chunks       int   `json:"chunks_verified"`
	Transactions int64 `json:"transactions_replayed"`
}

// DiskStatus is the space of a source's archive directory.
type DiskStatus struct {
	// UsedBytes is what the source's directory holds (archive and
	// snapshots).
	UsedBytes  int64  `json:"used_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
}

// StoreStatus is how far the store (storage.s3) holds a source's archive.
type StoreStatus struct {
	// Position is the archive position the store holds.
	Position Position `json:"gtid_position"`
	// LagSeconds is how long the store has been behind the local archive
	// (0 when it holds every durable transaction), BehindBytes by how much.
	LagSeconds  float64 `json:"lag_seconds"`
	BehindBytes int64   `json:"behind_bytes"`
	// LastUpload is when a commit point was last written.
	LastUpload *time.Time `json:"last_upload,omitempty"`
	// LastError is the last failure to upload, cleared by a success.
	LastError     string     `json:"last_error,omitempty"`
	LastErrorTime *time.Time `json:"last_error_time,omitempty"`
}

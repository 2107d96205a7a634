// Package config loads understudy.yaml: strict YAML, every error naming the
// file, the line or key, and what is wrong. docs/config.md is the reference.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/storage"
)

// Config is the whole configuration file.
type Config struct {
	Archive Archive `yaml:"archive"`
	// Retention applies to every source; a source's own retention block
	// replaces it field by field. See ResolveRetention.
	Retention *Retention `yaml:"retention"`
	HTTP      HTTP       `yaml:"http"`
	Sources   []Source   `yaml:"sources"`

	// Storage puts the archive and the snapshots in an S3 bucket too; nil:
	// archive.dir is the only store. See ResolveStorage.
	Storage *Storage `yaml:"storage"`

	// Path is the file the config was read from.
	Path string `yaml:"-"`
}

// Archive configures the local archive.
type Archive struct {
	Dir          string   `yaml:"dir"`
	SyncInterval Duration `yaml:"sync_interval"`
	MaxFileSize  ByteSize `yaml:"max_file_size"`
	// Start is where a source whose archive is empty begins: StartOldest
	// or StartCurrent; empty means StartOldest. See StartMode.
	Start string `yaml:"start"`
	// OnGap is what happens when the primary purged binlogs the archive
	// still needs: GapNewGeneration or GapStop; empty means
	// GapNewGeneration. See GapMode.
	OnGap string `yaml:"on_gap"`
	// MaxFileAge seals an archived file this long after it was created; 0
	// means DefaultMaxFileAge. See FileAge.
	MaxFileAge Duration `yaml:"max_file_age"`
	// MinFree is the free-space threshold of the archive's file system;
	// nil means DefaultMinFree. See MinFreeSpace.
	MinFree *FreeSpace `yaml:"min_free"`
}

// Values of archive.start and archive.on_gap.
const (
	StartOldest      = "oldest"
	StartCurrent     = "current"
	GapNewGeneration = "new-generation"
	GapStop          = "stop"
)

// DefaultMaxFileAge is archive.max_file_age when it is not set.
const DefaultMaxFileAge = time.Hour

// DefaultMinFree is archive.min_free when it is not set.
var DefaultMinFree = FreeSpace{Percent: 5}

// StartMode is archive.start with its default: StartOldest or StartCurrent.
func (a Archive) StartMode() string {
	if a.Start == "" {
		return StartOldest
	}
	return a.Start
}

// GapMode is archive.on_gap with its default: GapNewGeneration or GapStop.
func (a Archive) GapMode() string {
	if a.OnGap == "" {
		return GapNewGeneration
	}
	return a.OnGap
}

// FileAge is archive.max_file_age with its default.
func (a Archive) FileAge() time.Duration {
	if a.MaxFileAge <= 0 {
		return DefaultMaxFileAge
	}
	return a.MaxFileAge.D()
}

// MinFreeSpace is archive.min_free with its default.
func (a Archive) MinFreeSpace() FreeSpace {
	if a.MinFree == nil {
		return DefaultMinFree
	}
	return *a.MinFree
}

// HTTP configures the /metrics and /status listener.
type HTTP struct {
	// Listen is host:port; empty means the default 127.0.0.1:9307, and
	// "off" disables the listener.
	Listen string `yaml:"listen"`
}

// DefaultHTTPListen is where run serves /metrics and /status by default.
const DefaultHTTPListen = "127.0.0.1:9307"

// Source is one primary as written in the file.
type Source struct {
	Name         string    `yaml:"name"`
	Host         string    `yaml:"host"`
	Port         int       `yaml:"port"`
	User         string    `yaml:"user"`
	Password     string    `yaml:"password"`
	PasswordFile string    `yaml:"password_file"`
	PasswordEnv  string    `yaml:"password_env"`
	ServerID     uint32    `yaml:"server_id"`
	SemiSync     bool      `yaml:"semi_sync"`
	Heartbeat    Duration  `yaml:"heartbeat"`
	TLS          *TLS      `yaml:"tls"`
	Serve        *Serve    `yaml:"serve"`
	Snapshot     *Snapshot `yaml:"snapshot"`
	// Drill configures this source's restore drills.
	Drill *Drill `yaml:"drill"`
	// ReplicationUser and its password are the account that backup
	// replicas provisioned with --via primary replicate from the primary
	// with (REPLICATION SLAVE); understudy itself never uses it.
	ReplicationUser         string `yaml:"replication_user"`
	ReplicationPassword     string `yaml:"replication_password"`
	ReplicationPasswordFile string `yaml:"replication_password_file"`
	ReplicationPasswordEnv  string `yaml:"replication_password_env"`
	// Retention replaces the top-level retention field by field.
	Retention *SourceRetention `yaml:"retention"`
}

// Retention is a retention block as written in the file. A nil field is
// unset: in a source's block it comes from the top-level block.
type Retention struct {
	// Window keeps whatever restores any point in the last Window.
	Window *Duration `yaml:"window"`
	// MinSnapshots is the least number of snapshots kept (default 1).
	MinSnapshots *int `yaml:"min_snapshots"`
	// KeepDaily, KeepWeekly and KeepMonthly keep the newest snapshot of
	// each of the last N days, ISO weeks and months that have one.
	KeepDaily   *int `yaml:"keep_daily"`
	KeepWeekly  *int `yaml:"keep_weekly"`
	KeepMonthly *int `yaml:"keep_monthly"`
}

// SourceRetention is a source's retention block; it is its own type only
// so that errors can tell it from the top-level one.
type SourceRetention Retention

// RetentionSettings is the retention that applies to a source: its
// retention block merged over the top-level one, or the snapshot.keep
// shorthand.
type RetentionSettings struct {
	Enabled                            bool          // some retention applies to this source
	Window                             time.Duration // 0: no time window
	MinSnapshots                       int
	KeepDaily, KeepWeekly, KeepMonthly int
	KeepLast                           int  // from snapshot.keep; 0 if not set
	PruneBinlogs                       bool // true for a retention block; false for the snapshot.keep shorthand
}

// Snapshot configures snapshots of a source.
type Snapshot struct {
	// Every schedules snapshots in `understudy run`; 0 means none.
	Every Duration `yaml:"every"`
	// OnStart takes a base snapshot as soon as an archive or a new
	// generation begins; nil means true.
	OnStart *bool `yaml:"on_start"`
	// Threads is the number of parallel readers (default 4).
	Threads int `yaml:"threads"`
	// ChunkRows is the target number of rows per data file.
	ChunkRows int64 `yaml:"chunk_rows"`
	// Users also saves the accounts, roles and grants (restore applies
	// them with --users).
	Users bool `yaml:"users"`
	// Keep is how many snapshots to keep: after each new one, older ones
	// beyond this number are removed. 0 keeps them all. It is the older
	// shorthand of a retention block and cannot be combined with one.
	Keep int `yaml:"keep"`
	// User and password override the source's for reading data (the user
	// needs SELECT, SHOW VIEW, TRIGGER, EVENT and RELOAD).
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// From, if set, takes snapshots from a replica of the source instead of
	// the primary.
	From *Endpoint `yaml:"from"`
}

// Drill configures the restore drills of a source: `understudy drill`,
// and drill.every in `understudy run`. See docs/drills.md.
type Drill struct {
	// Every schedules drills in `understudy run`; 0 means none.
	Every Duration `yaml:"every"`
	// Target is the server the backups are restored onto: DrillTargetAuto
	// (the default, also when empty), a throwaway mariadbd on this host
	// for each drill, or USER@HOST:PORT of a server that holds no user
	// data, with its password and tls.
	Target       string `yaml:"target"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	TLS          *TLS   `yaml:"tls"`
	// Threads loads and checks in parallel (default 4).
	Threads int `yaml:"threads"`
	// ScratchDir is where an auto target's temporary directory is made
	// (default: the system's temporary directory).
	ScratchDir string `yaml:"scratch_dir"`
}

// DrillTargetAuto is drill.target's default: a throwaway mariadbd.
const DrillTargetAuto = "auto"

// DrillSettings is a resolved drill block.
type DrillSettings struct {
	Every time.Duration
	// Target is the given target; nil for auto.
	Target     *understudy.Source
	Threads    int
	ScratchDir string
}

// ResolveDrill resolves the drill settings of a source; a source without
// a drill block gets the defaults (auto target, 4 threads, no schedule).
func (c *Config) ResolveDrill(s *Source) (DrillSettings, error) {
	out := DrillSettings{Threads: 4}
	d := s.Drill
	if d == nil {
		return out, nil
	}
	out.Every = d.Every.D()
	if d.Threads > 0 {
		out.Threads = d.Threads
	}
	if d.ScratchDir != "" {
		out.ScratchDir = c.rel(d.ScratchDir)
	}
	if d.Target == "" || d.Target == DrillTargetAuto {
		return out, nil
	}
	user, host, port, err := splitServer(d.Target)
	if err != nil {
		return out, fmt.Errorf("%s: source %s: drill.target: %w", c.Path, s.Name, err)
	}
	t := understudy.Source{Name: s.Name + " drill target", User: user, Host: host, Port: port}
	if t.Password, err = c.password(s.Name+" drill", d.Password, d.PasswordFile, d.PasswordEnv); err != nil {
		return out, err
	}
	if t.TLS, err = c.tlsConfig(s.Name, "drill.tls", d.TLS, host); err != nil {
		return out, err
	}
	out.Target = &t
	return out, nil
}

// splitServer parses USER@HOST:PORT.
func splitServer(s string) (user, host string, port int, err error) {
	at := strings.LastIndex(s, "@")
	bad := fmt.Errorf("%q is not %s or USER@HOST:PORT", s, DrillTargetAuto)
	if at <= 0 {
		return "", "", 0, bad
	}
	host, p, err := net.SplitHostPort(s[at+1:])
	if err != nil || host == "" {
		return "", "", 0, bad
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", "", 0, fmt.Errorf("%q: %s is not a TCP port (1..65535)", s, p)
	}
	return s[:at], host, port, nil
}

// Endpoint is the replica of snapshot.from. Nothing of it comes from the
// source: a replica without a tls block is reached without TLS.
type Endpoint struct {
	Host         string `yaml:"host"`
	Port         int    `yaml:"port"`
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	TLS          *TLS   `yaml:"tls"`
	// MaxLag is how far the replica may be behind its primary
	// (Seconds_Behind_Master) for a snapshot to be taken from it; 0 means
	// the default, snapshot.DefaultMaxLag (5m).
	MaxLag Duration `yaml:"max_lag"`
}

// Serve configures the binlog server of a source: understudy serves the
// source's archive to MariaDB replicas as if it were the primary.
type Serve struct {
	Listen       string `yaml:"listen"`
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// ServerID is announced to replicas; default: the source's server_id.
	ServerID uint32    `yaml:"server_id"`
	TLS      *ServeTLS `yaml:"tls"`
}

// ServeTLS is the binlog server's certificate; replicas must then use TLS,
// unless Required is false.
type ServeTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Required: clients without TLS are refused (default true); false
	// accepts both.
	Required *bool `yaml:"required"`
}

// ServeSettings is a resolved serve block.
type ServeSettings struct {
	Listen, User, Password string
	ServerID               uint32
	TLS                    *tls.Config
	// TLSOptional: with TLS, clients without TLS are accepted too
	// (serve.tls.required: false).
	TLSOptional bool
}

// TLS configures a TLS connection to a primary.
type TLS struct {
	CA                 string `yaml:"ca"`
	Cert               string `yaml:"cert"`
	Key                string `yaml:"key"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Storage is the storage block: the archive and the snapshots in an
// S3-compatible bucket, besides the local archive.dir. docs/storage.md
// describes it.
type Storage struct {
	S3 *S3 `yaml:"s3"`
	// LocalKeep is how many bytes of sealed, uploaded files the local
	// archive directory keeps; nil means DefaultLocalKeep.
	LocalKeep *ByteSize `yaml:"local_keep"`
	// UploadInterval is how often the active file's new bytes are
	// shipped; 0 means DefaultUploadInterval.
	UploadInterval Duration    `yaml:"upload_interval"`
	Encryption     *Encryption `yaml:"encryption"`
}

// S3 is the bucket of the storage block. Its keys come from the
// environment or from files, exactly one of each pair.
type S3 struct {
	Bucket        string `yaml:"bucket"`
	Prefix        string `yaml:"prefix"`
	Endpoint      string `yaml:"endpoint"`
	Region        string `yaml:"region"`
	AccessKeyEnv  string `yaml:"access_key_env"`
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyEnv  string `yaml:"secret_key_env"`
	SecretKeyFile string `yaml:"secret_key_file"`
	PathStyle     bool   `yaml:"path_style"`
	CAFile        string `yaml:"ca_file"`
}

// Encryption is the age keys of the storage block: the recipients are
// enough to write, the identity is needed to read.
type Encryption struct {
	RecipientsFile string `yaml:"recipients_file"`
	IdentityFile   string `yaml:"identity_file"`
}

// Defaults and limits of the storage block.
const (
	DefaultLocalKeep      = 2 << 30
	DefaultUploadInterval = time.Second
	MinUploadInterval     = 100 * time.Millisecond
	MaxUploadInterval     = time.Hour
)

// check validates a storage block; every error names its key.
func (s *Storage) check() error {
	if s == nil {
		return nil
	}
	b := s.S3
	if b == nil {
		return errors.New("storage.s3: required in a storage block (without a storage block, archive.dir is the only store)")
	}
	if b.Bucket == "" {
		return errors.New("storage.s3.bucket: required")
	}
	if err := storage.CheckBucket(b.Bucket); err != nil {
		return fmt.Errorf("storage.s3.bucket: %w", err)
	}
	if _, err := storage.NormalizePrefix(b.Prefix); err != nil {
		return fmt.Errorf("storage.s3.prefix: %q is not a prefix of object names (segments separated by single slashes, none starting with a dot)", b.Prefix)
	}
	_, secure, err := storage.ParseEndpoint(b.Endpoint)
	switch {
	case err != nil:
		return fmt.Errorf("storage.s3.endpoint: %w", err)
	case countSet(b.AccessKeyEnv, b.AccessKeyFile) != 1:
		return errors.New("storage.s3: give exactly one of access_key_env and access_key_file")
	case countSet(b.SecretKeyEnv, b.SecretKeyFile) != 1:
		return errors.New("storage.s3: give exactly one of secret_key_env and secret_key_file")
	case b.CAFile != "" && !secure:
		return errors.New("storage.s3.ca_file: the endpoint is http://; a CA file needs an https:// endpoint")
	case s.Encryption != nil && s.Encryption.RecipientsFile == "" && s.Encryption.IdentityFile == "":
		return errors.New("storage.encryption: give recipients_file (to write), identity_file (to read), or both")
	}
	return durationRange("storage.upload_interval", s.UploadInterval, MinUploadInterval, MaxUploadInterval)
}

// ResolveStorage resolves the storage block: the bucket's keys are read
// from the environment or their files, paths are made absolute, defaults
// are applied. It returns nil without a storage block: archive.dir is
// then the only store. storage/s3.Open builds the store from the result,
// storage.LoadKeys reads its keys.
func (c *Config) ResolveStorage() (*storage.Settings, error) {
	s := c.Storage
	if s == nil {
		return nil, nil
	}
	b := s.S3
	prefix, _ := storage.NormalizePrefix(b.Prefix)
	out := &storage.Settings{
		S3:             storage.S3Settings{Bucket: b.Bucket, Prefix: prefix, Endpoint: b.Endpoint, Region: b.Region, PathStyle: b.PathStyle},
		LocalKeep:      DefaultLocalKeep,
		UploadInterval: DefaultUploadInterval,
	}
	if s.LocalKeep != nil {
		out.LocalKeep = int64(*s.LocalKeep)
	}
	if s.UploadInterval > 0 {
		out.UploadInterval = s.UploadInterval.D()
	}
	if b.CAFile != "" {
		out.S3.CAFile = c.rel(b.CAFile)
	}
	var err error
	if out.S3.AccessKey, err = c.storageSecret("access_key", b.AccessKeyEnv, b.AccessKeyFile); err != nil {
		return nil, err
	}
	if out.S3.SecretKey, err = c.storageSecret("secret_key", b.SecretKeyEnv, b.SecretKeyFile); err != nil {
		return nil, err
	}
	if e := s.Encryption; e != nil {
		if e.RecipientsFile != "" {
			out.RecipientsFile = c.rel(e.RecipientsFile)
		}
		if e.IdentityFile != "" {
			out.IdentityFile = c.rel(e.IdentityFile)
		}
	}
	return out, nil
}

// storageSecret reads a key of storage.s3 from the environment or a file
// (a trailing newline is ignored); it must not be empty.
func (c *Config) storageSecret(key, env, file string) (string, error) {
	if env != "" {
		v, ok := os.LookupEnv(env)
		switch {
		case !ok:
			return "", fmt.Errorf("%s: storage.s3.%s_env: environment variable %s is not set", c.Path, key, env)
		case v == "":
			return "", fmt.Errorf("%s: storage.s3.%s_env: environment variable %s is empty", c.Path, key, env)
		}
		return v, nil
	}
	bs, err := os.ReadFile(c.rel(file))
	if err != nil {
		return "", fmt.Errorf("%s: storage.s3.%s_file: %w", c.Path, key, err)
	}
	v := strings.TrimRight(string(bs), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s: storage.s3.%s_file: %s is empty", c.Path, key, c.rel(file))
	}
	return v, nil
}

// ByteSize is a size written as 268435456, "256MiB" or "256MB".
type ByteSize int64

// UnmarshalYAML parses sizes with an optional unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		return fmt.Errorf("line %d: invalid size %q (want e.g. 256MiB, below 8EiB)", n.Line, n.Value)
	}
	*b = ByteSize(v * mult)
	return nil
}

// Duration is a duration written as a Go duration ("90s", "36h", "1h30m",
// "500ms") or with a d unit for days of 24 hours ("14d", "1d12h").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// dayRe matches a number of days in a duration.
var dayRe = regexp.MustCompile(`([0-9]+\.?[0-9]*|\.[0-9]+)d`)

// ParseDuration parses a Go duration that may also use d for days.
func ParseDuration(str string) (time.Duration, error) {
	s := strings.TrimSpace(str)
	bad := false
	s = dayRe.ReplaceAllStringFunc(s, func(m string) string {
		num := strings.TrimSuffix(m, "d")
		r, ok := new(big.Rat).SetString(num)
		if !ok {
			bad = true
			return m
		}
		prec := 0
		if i := strings.IndexByte(num, '.'); i >= 0 {
			prec = len(num) - i - 1
		}
		// 24 times a decimal with prec digits has at most prec digits.
		return r.Mul(r, big.NewRat(24, 1)).FloatString(prec) + "h"
	})
	if bad {
		return 0, fmt.Errorf("invalid duration %q", str)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", str)
	}
	return d, nil
}

// UnmarshalYAML parses durations with ParseDuration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: invalid duration (want e.g. 90s, 36h or 14d)", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (want e.g. 90s, 36h or 14d)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// FreeSpace is a free-space threshold: a percentage of the file system's
// size ("5%", "0.5%") or a size ("10GiB"). Exactly one of Percent and
// Bytes is used: Bytes when it is not 0.
type FreeSpace struct {
	Percent float64
	Bytes   int64
}

// UnmarshalYAML parses a percentage or a size.
func (f *FreeSpace) UnmarshalYAML(n *yaml.Node) error {
	bad := fmt.Errorf("line %d: invalid free space %q (want a percentage such as 5%% or a size such as 10GiB)", n.Line, n.Value)
	if n.Kind != yaml.ScalarNode {
		return bad
	}
	s := strings.TrimSpace(n.Value)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return bad
		}
		*f = FreeSpace{Percent: v}
		return nil
	}
	var b ByteSize
	if b.UnmarshalYAML(n) != nil {
		return bad
	}
	*f = FreeSpace{Bytes: int64(b)}
	return nil
}

// Below tells whether free bytes out of a file system of total bytes is
// below the threshold. A percentage threshold is never reached when total
// is 0 (unknown).
func (f FreeSpace) Below(free, total uint64) bool {
	if f.Bytes > 0 {
		return free < uint64(f.Bytes)
	}
	if total == 0 {
		return false
	}
	return float64(free) < f.Percent/100*float64(total)
}

// String formats the threshold as "5%" or "10.0 GiB".
func (f FreeSpace) String() string {
	if f.Bytes == 0 {
		return strconv.FormatFloat(f.Percent, 'f', -1, 64) + "%"
	}
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if f.Bytes >= u.size {
			return fmt.Sprintf("%.1f %s", float64(f.Bytes)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d B", f.Bytes)
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes and validates config bytes; path is used in messages.
func Parse(path string, b []byte) (*Config, error) {
	var c Config
	// yaml.v3 would truncate 9001.7 to 9001 and reject 4294967296 without
	// naming the key: check every scalar against its key's type first.
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err == nil {
		if err := checkScalars(&doc, reflect.TypeOf(c), ""); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %s", path, yamlError(err))
	}
	c.Path = path
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

var (
	unknownFieldRe = regexp.MustCompile(`line (\d+): field (\S+) not found in type config\.(\w+)`)
	cannotRe       = regexp.MustCompile("line (\\d+): cannot unmarshal !!(\\w+) `([^`]*)` into (\\S+)")
)

var sectionNames = map[string]string{"Config": "the top level", "Archive": "archive", "HTTP": "http", "Source": "a source", "TLS": "tls", "Serve": "serve", "ServeTLS": "serve.tls", "Snapshot": "snapshot", "Endpoint": "snapshot.from", "Drill": "drill", "Retention": "retention", "SourceRetention": "a source's retention", "Storage": "storage", "S3": "storage.s3", "Encryption": "storage.encryption"}

func yamlError(err error) string {
	if errors.Is(err, errEmpty) || err.Error() == "EOF" {
		return "file is empty"
	}
	msg := err.Error()
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "yaml:"))
		if line == "" || line == "unmarshal errors:" {
			continue
		}
		if m := unknownFieldRe.FindStringSubmatch(line); m != nil {
			line = fmt.Sprintf("line %s: unknown key %q in %s", m[1], m[2], sectionNames[m[3]])
		} else if m := cannotRe.FindStringSubmatch(line); m != nil {
			want := strings.TrimPrefix(m[4], "*")
			switch {
			case strings.HasPrefix(want, "uint"), strings.HasPrefix(want, "int"):
				want = "a whole number"
			case want == "time.Duration", want == "config.Duration":
				want = "a duration such as 90s, 36h or 14d"
			case strings.HasPrefix(want, "float"):
				want = "a number"
			case want == "bool":
				want = "true or false"
			case strings.HasPrefix(want, "[]"):
				want = "a list"
			case strings.HasPrefix(want, "config."):
				want = "a mapping"
			}
			line = fmt.Sprintf("line %s: invalid value %q (want %s)", m[1], m[3], want)
		}
		out = append(out, line)
	}
	return strings.Join(out, "; ")
}

var errEmpty = errors.New("empty")

func (c *Config) validate() error {
	if c.Archive.Dir == "" {
		return errors.New("archive.dir: required (the directory that holds the archive)")
	}
	if err := durationRange("archive.sync_interval", c.Archive.SyncInterval, time.Millisecond, time.Hour); err != nil {
		return err
	}
	if c.Archive.MaxFileSize != 0 && (c.Archive.MaxFileSize < 1<<20 || c.Archive.MaxFileSize > 1<<32-1<<20) {
		return errors.New("archive.max_file_size: must be between 1MiB and 4095MiB (binlog offsets are 32-bit)")
	}
	switch a := c.Archive; {
	case a.Start != "" && a.Start != StartOldest && a.Start != StartCurrent:
		return fmt.Errorf("archive.start: %q is not %s or %s", a.Start, StartOldest, StartCurrent)
	case a.OnGap != "" && a.OnGap != GapNewGeneration && a.OnGap != GapStop:
		return fmt.Errorf("archive.on_gap: %q is not %s or %s", a.OnGap, GapNewGeneration, GapStop)
	case a.MaxFileAge < 0:
		return errors.New("archive.max_file_age: must not be negative")
	case a.MaxFileAge > 0 && a.MaxFileAge.D() < time.Second:
		return fmt.Errorf("archive.max_file_age: %s is less than 1s", a.MaxFileAge)
	case a.MaxFileAge.D() > 366*24*time.Hour:
		return fmt.Errorf("archive.max_file_age: %s is more than 366d (a file is sealed by size or age, at the latest after a year)", a.MaxFileAge)
	case a.MinFree != nil && !(a.MinFree.Percent >= 0 && a.MinFree.Percent < 100):
		return fmt.Errorf("archive.min_free: %s is not a percentage from 0%% to below 100%%", a.MinFree)
	}
	if err := c.Storage.check(); err != nil {
		return err
	}
	if err := c.Retention.check("retention"); err != nil {
		return err
	}
	if len(c.Sources) == 0 {
		return errors.New("sources: at least one source is required")
	}
	names := map[string]int{}
	ids := map[uint32]int{}
	listens := map[string]int{}
	for i := range c.Sources {
		s := &c.Sources[i]
		key := func(k string) string { return fmt.Sprintf("sources[%d].%s", i, k) }
		switch {
		case s.Name == "":
			return fmt.Errorf("%s: required", key("name"))
		case !nameRe.MatchString(s.Name):
			return fmt.Errorf("%s: %q is not a valid name (letters, digits, '_', '-', '.')", key("name"), s.Name)
		case s.Host == "":
			return fmt.Errorf("%s: required", key("host"))
		case s.Port == 0:
			return fmt.Errorf("%s: required", key("port"))
		case s.Port < 0 || s.Port > 65535:
			return fmt.Errorf("%s: %d is not a TCP port (1..65535)", key("port"), s.Port)
		case s.User == "":
			return fmt.Errorf("%s: required", key("user"))
		case s.ServerID == 0:
			return fmt.Errorf("%s: required (a server_id, not 0, unique among the primary's replicas)", key("server_id"))
		}
		if err := durationRange(key("heartbeat"), s.Heartbeat, MinHeartbeat, MaxHeartbeat); err != nil {
			return err
		}
		n := 0
		for _, set := range []bool{s.Password != "", s.PasswordFile != "", s.PasswordEnv != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("sources[%d] (%s): give exactly one of password, password_file and password_env", i, s.Name)
		}
		if j, dup := names[s.Name]; dup {
			return fmt.Errorf("%s: %q is also the name of sources[%d]", key("name"), s.Name, j)
		}
		names[s.Name] = i
		if j, dup := ids[s.ServerID]; dup {
			return fmt.Errorf("%s: %d is also the server_id of sources[%d] (%s); each source needs its own", key("server_id"), s.ServerID, j, c.Sources[j].Name)
		}
		ids[s.ServerID] = i
		if s.TLS != nil && (s.TLS.Cert == "") != (s.TLS.Key == "") {
			return fmt.Errorf("%s: cert and key go together", key("tls"))
		}
		if sv := s.Serve; sv != nil {
			switch {
			case sv.Listen == "":
				return fmt.Errorf("%s: required (host:port replicas connect to)", key("serve.listen"))
			case sv.User == "":
				return fmt.Errorf("%s: required (the user replicas log in with)", key("serve.user"))
			case countSet(sv.Password, sv.PasswordFile, sv.PasswordEnv) != 1:
				return fmt.Errorf("sources[%d].serve (%s): give exactly one of password, password_file and password_env", i, s.Name)
			case sv.TLS != nil && (sv.TLS.Cert == "" || sv.TLS.Key == ""):
				return fmt.Errorf("%s: cert and key are both required", key("serve.tls"))
			}
			if j, dup := listens[sv.Listen]; dup {
				return fmt.Errorf("%s: %s is also the serve.listen of sources[%d]", key("serve.listen"), sv.Listen, j)
			}
			listens[sv.Listen] = i
		}
		if sn := s.Snapshot; sn != nil {
			switch {
			case sn.Every < 0 || sn.ChunkRows < 0 || sn.Keep < 0:
				return fmt.Errorf("%s: every, chunk_rows and keep must not be negative", key("snapshot"))
			case sn.Every > 0 && sn.Every.D() < time.Second:
				return fmt.Errorf("%s: %s is less than 1s", key("snapshot.every"), sn.Every)
			case sn.Threads != 0 && (sn.Threads < 1 || sn.Threads > MaxThreads):
				return fmt.Errorf("%s: %d is not between 1 and %d", key("snapshot.threads"), sn.Threads, MaxThreads)
			case countSet(sn.Password, sn.PasswordFile, sn.PasswordEnv) > 1:
				return fmt.Errorf("%s: give at most one of password, password_file and password_env", key("snapshot"))
			case sn.From != nil && (sn.From.Host == "" || sn.From.Port == 0 || sn.From.User == ""):
				return fmt.Errorf("%s: host, port and user are required", key("snapshot.from"))
			case sn.From != nil && countSet(sn.From.Password, sn.From.PasswordFile, sn.From.PasswordEnv) != 1:
				return fmt.Errorf("%s: give exactly one of password, password_file and password_env", key("snapshot.from"))
			case sn.From != nil && sn.From.TLS != nil && (sn.From.TLS.Cert == "") != (sn.From.TLS.Key == ""):
				return fmt.Errorf("%s: cert and key go together", key("snapshot.from.tls"))
			}
			if sn.From != nil {
				if err := durationRange(key("snapshot.from.max_lag"), sn.From.MaxLag, MinMaxLag, MaxMaxLag); err != nil {
					return err
				}
			}
		}
		if d := s.Drill; d != nil {
			if err := durationRange(key("drill.every"), d.Every, MinDrillEvery, MaxDrillEvery); err != nil {
				return err
			}
			auto := d.Target == "" || d.Target == DrillTargetAuto
			switch {
			case d.Threads != 0 && (d.Threads < 1 || d.Threads > MaxThreads):
				return fmt.Errorf("%s: %d is not between 1 and %d", key("drill.threads"), d.Threads, MaxThreads)
			case auto && (countSet(d.Password, d.PasswordFile, d.PasswordEnv) > 0 || d.TLS != nil):
				return fmt.Errorf("%s: password, password_file, password_env and tls are for a drill.target USER@HOST:PORT, not %s", key("drill"), DrillTargetAuto)
			case !auto && countSet(d.Password, d.PasswordFile, d.PasswordEnv) > 1:
				return fmt.Errorf("%s: give at most one of password, password_file and password_env", key("drill"))
			case d.TLS != nil && (d.TLS.Cert == "") != (d.TLS.Key == ""):
				return fmt.Errorf("%s: cert and key go together", key("drill.tls"))
			}
			if !auto {
				if _, _, _, err := splitServer(d.Target); err != nil {
					return fmt.Errorf("%s: %w", key("drill.target"), err)
				}
			}
		}
		if err := (*Retention)(s.Retention).check(key("retention")); err != nil {
			return err
		}
		if r, ok := c.effectiveRetention(s); ok {
			where := key("retention")
			if s.Retention == nil {
				where = "retention"
			}
			switch {
			case s.Snapshot != nil && s.Snapshot.Keep > 0:
				return fmt.Errorf("%s: cannot be combined with %s; use retention.min_snapshots instead", key("snapshot.keep"), where)
			case !r.hasRule():
				return fmt.Errorf("%s: give window or keep_daily/keep_weekly/keep_monthly", where)
			}
		}
	}
	return nil
}

// check reports a negative value in a retention block; prefix is the
// block's key.
func (r *Retention) check(prefix string) error {
	if r == nil {
		return nil
	}
	if r.Window != nil && *r.Window < 0 {
		return fmt.Errorf("%s.window: must not be negative", prefix)
	}
	for _, f := range []struct {
		key string
		v   *int
	}{{"min_snapshots", r.MinSnapshots}, {"keep_daily", r.KeepDaily}, {"keep_weekly", r.KeepWeekly}, {"keep_monthly", r.KeepMonthly}} {
		if f.v != nil && *f.v < 0 {
			return fmt.Errorf("%s.%s: must not be negative", prefix, f.key)
		}
	}
	return nil
}

// hasRule tells whether a retention block says what to keep.
func (r Retention) hasRule() bool {
	pos := func(v *int) bool { return v != nil && *v > 0 }
	return (r.Window != nil && *r.Window > 0) || pos(r.MinSnapshots) || pos(r.KeepDaily) || pos(r.KeepWeekly) || pos(r.KeepMonthly)
}

// effectiveRetention merges a source's retention block over the top-level
// one; ok is false when neither exists.
func (c *Config) effectiveRetention(s *Source) (r Retention, ok bool) {
	if c.Retention != nil {
		r, ok = *c.Retention, true
	}
	if sr := s.Retention; sr != nil {
		ok = true
		if sr.Window != nil {
			r.Window = sr.Window
		}
		if sr.MinSnapshots != nil {
			r.MinSnapshots = sr.MinSnapshots
		}
		if sr.KeepDaily != nil {
			r.KeepDaily = sr.KeepDaily
		}
		if sr.KeepWeekly != nil {
			r.KeepWeekly = sr.KeepWeekly
		}
		if sr.KeepMonthly != nil {
			r.KeepMonthly = sr.KeepMonthly
		}
	}
	return r, ok
}

// ResolveRetention is the retention of a source: its retention block
// merged field by field over the top-level one (min_snapshots defaults to
// 1), else the snapshot.keep shorthand, else none (Enabled false: nothing
// is removed). Parse has validated the result.
func (c *Config) ResolveRetention(s *Source) RetentionSettings {
	if r, ok := c.effectiveRetention(s); ok {
		get := func(v *int) int {
			if v == nil {
				return 0
			}
			return *v
		}
		out := RetentionSettings{Enabled: true, PruneBinlogs: true, MinSnapshots: 1,
			KeepDaily: get(r.KeepDaily), KeepWeekly: get(r.KeepWeekly), KeepMonthly: get(r.KeepMonthly)}
		if r.Window != nil {
			out.Window = r.Window.D()
		}
		if r.MinSnapshots != nil {
			out.MinSnapshots = *r.MinSnapshots
		}
		return out
	}
	if s.Snapshot != nil && s.Snapshot.Keep > 0 {
		n := s.Snapshot.Keep
		return RetentionSettings{Enabled: true, KeepLast: n, MinSnapshots: n}
	}
	return RetentionSettings{}
}

// SnapshotSettings is a resolved snapshot block.
type SnapshotSettings struct {
	Every       time.Duration
	Threads     int
	ChunkRows   int64
	Users       bool
	Keep        int
	FromReplica bool
	// MaxLag bounds how far behind the replica of snapshot.from may be
	// (snapshot.from.max_lag); 0 means snapshot.DefaultMaxLag.
	MaxLag time.Duration
	// OnStart takes a base snapshot as soon as an archive or a new
	// generation begins (snapshot.on_start, default true).
	OnStart bool
	// Conn is where data is read from: the source itself (with the
	// snapshot user, if set) or the replica of snapshot.from.
	Conn understudy.Source
}

// ResolveSnapshot resolves the snapshot settings of a source; a source
// without a snapshot block gets the defaults and reads from the primary.
func (c *Config) ResolveSnapshot(s *Source) (SnapshotSettings, error) {
	src, err := c.Resolve(s)
	if err != nil {
		return SnapshotSettings{}, err
	}
	out := SnapshotSettings{Threads: 4, Conn: src, OnStart: true}
	sn := s.Snapshot
	if sn == nil {
		return out, nil
	}
	out.Every, out.ChunkRows, out.Users, out.Keep = sn.Every.D(), sn.ChunkRows, sn.Users, sn.Keep
	if sn.OnStart != nil {
		out.OnStart = *sn.OnStart
	}
	if sn.Threads > 0 {
		out.Threads = sn.Threads
	}
	if sn.User != "" {
		out.Conn.User = sn.User
		if out.Conn.Password, err = c.password(s.Name+" snapshot", sn.Password, sn.PasswordFile, sn.PasswordEnv); err != nil {
			return out, err
		}
	}
	if f := sn.From; f != nil {
		// The replica is a server of its own: its address, user, password
		// and TLS, none of them the source's.
		out.FromReplica, out.MaxLag = true, f.MaxLag.D()
		out.Conn.Host, out.Conn.Port, out.Conn.User = f.Host, f.Port, f.User
		if out.Conn.Password, err = c.password(s.Name+" snapshot.from", f.Password, f.PasswordFile, f.PasswordEnv); err != nil {
			return out, err
		}
		if out.Conn.TLS, err = c.tlsConfig(s.Name, "snapshot.from.tls", f.TLS, f.Host); err != nil {
			return out, err
		}
	}
	return out, nil
}

// SnapshotDir is the directory of a source's snapshots.
func (c *Config) SnapshotDir(name string) string {
	return filepath.Join(c.SourceDir(name), "snapshots")
}

func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}

// ResolveServe reads the binlog server settings of a source: password and
// certificate. It fails if the source has no serve block.
func (c *Config) ResolveServe(s *Source) (ServeSettings, error) {
	sv := s.Serve
	if sv == nil {
		return ServeSettings{}, fmt.Errorf("%s: source %s has no serve block (serve.user and a password for replicas)", c.Path, s.Name)
	}
	out := ServeSettings{Listen: sv.Listen, User: sv.User, ServerID: sv.ServerID}
	if out.ServerID == 0 {
		out.ServerID = s.ServerID
	}
	if _, ok := os.LookupEnv(sv.PasswordEnv); sv.PasswordEnv != "" && !ok {
		return out, fmt.Errorf("%s: source %s: serve.password_env: environment variable %s is not set; the binlog server needs a password", c.Path, s.Name, sv.PasswordEnv)
	}
	pw, err := c.password(s.Name+" serve", sv.Password, sv.PasswordFile, sv.PasswordEnv)
	if err != nil {
		return out, err
	}
	if pw == "" {
		// An empty password would let anyone read the archive.
		what := "serve.password"
		switch {
		case sv.PasswordEnv != "":
			what = fmt.Sprintf("serve.password_env: environment variable %s", sv.PasswordEnv)
		case sv.PasswordFile != "":
			what = fmt.Sprintf("serve.password_file: %s", c.rel(sv.PasswordFile))
		}
		return out, fmt.Errorf("%s: source %s: %s is empty; the binlog server needs a password", c.Path, s.Name, what)
	}
	out.Password = pw
	if sv.TLS != nil {
		cert, err := tls.LoadX509KeyPair(c.rel(sv.TLS.Cert), c.rel(sv.TLS.Key))
		if err != nil {
			return out, fmt.Errorf("%s: source %s: serve.tls: %w", c.Path, s.Name, err)
		}
		out.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		out.TLSOptional = sv.TLS.Required != nil && !*sv.TLS.Required
	}
	return out, nil
}

// ResolveReplication returns the account of the source's
// replication_user keys, for replicas that replicate from the primary.
func (c *Config) ResolveReplication(s *Source) (user, password string, err error) {
	if s.ReplicationUser == "" {
		return "", "", fmt.Errorf("%s: source %s has no replication_user (and replication_password_env, replication_password_file or replication_password): the account replicas use to replicate from the primary", c.Path, s.Name)
	}
	if countSet(s.ReplicationPassword, s.ReplicationPasswordFile, s.ReplicationPasswordEnv) > 1 {
		return "", "", fmt.Errorf("%s: source %s: give one of replication_password, replication_password_file and replication_password_env", c.Path, s.Name)
	}
	password, err = c.password(s.Name+" replication_user", s.ReplicationPassword, s.ReplicationPasswordFile, s.ReplicationPasswordEnv)
	return s.ReplicationUser, password, err
}

// password reads a password given literally, in a file or in the
// environment.
func (c *Config) password(what, literal, file, env string) (string, error) {
	switch {
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("%s: %s: environment variable %s (password_env) is not set", c.Path, what, env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(c.rel(file))
		if err != nil {
			return "", fmt.Errorf("%s: %s: password_file: %w", c.Path, what, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return literal, nil
}

// Source returns the configured source by name.
func (c *Config) Source(name string) (*Source, error) {
	var names []string
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], nil
		}
		names = append(names, c.Sources[i].Name)
	}
	return nil, fmt.Errorf("%s: no source named %q (have: %s)", c.Path, name, strings.Join(names, ", "))
}

// SourceDir is the archive directory of a source.
func (c *Config) SourceDir(name string) string {
	dir := c.Archive.Dir
	if !filepath.IsAbs(dir) && c.Path != "" {
		dir = filepath.Join(filepath.Dir(c.Path), dir)
	}
	return filepath.Join(dir, name)
}

// HTTPListen returns the listen address, "" when disabled.
func (c *Config) HTTPListen() string {
	switch c.HTTP.Listen {
	case "":
		return DefaultHTTPListen
	case "off":
		return ""
	}
	return c.HTTP.Listen
}

// Resolve turns the file's source into the runtime Source: it reads the
// password and the TLS files.
func (c *Config) Resolve(s *Source) (understudy.Source, error) {
	out := understudy.Source{
		Name: s.Name, Host: s.Host, Port: s.Port, User: s.User, ServerID: s.ServerID,
		SemiSync: s.SemiSync, Heartbeat: s.Heartbeat.D(),
	}
	if out.Heartbeat == 0 {
		out.Heartbeat = time.Second
	}
	pw, err := c.password("source "+s.Name, s.Password, s.PasswordFile, s.PasswordEnv)
	if err != nil {
		return out, err
	}
	out.Password = pw
	out.TLS, err = c.tlsConfig(s.Name, "tls", s.TLS, s.Host)
	return out, err
}

// tlsConfig reads a tls block (key names it in errors) for a connection
// to host; nil without one.
func (c *Config) tlsConfig(source, key string, t *TLS, host string) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if t.CA != "" {
		pem, err := os.ReadFile(c.rel(t.CA))
		if err != nil {
			return nil, fmt.Errorf("%s: source %s: %s.ca: %w", c.Path, source, key, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: source %s: %s.ca: no PEM certificate in %s", c.Path, source, key, t.CA)
		}
		tc.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.rel(t.Cert), c.rel(t.Key))
		if err != nil {
			return nil, fmt.Errorf("%s: source %s: %s.cert/%s.key: %w", c.Path, source, key, key, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (c *Config) rel(p string) string {
	if filepath.IsAbs(p) || c.Path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// Limits of numbers and durations that are not limited by their type.
const (
	// MinHeartbeat and MaxHeartbeat bound a source's heartbeat: a shorter
	// one burns CPU on both sides, a longer one hides a dead stream.
	MinHeartbeat = 100 * time.Millisecond
	MaxHeartbeat = time.Hour
	// MaxThreads bounds every threads setting and flag.
	MaxThreads = 256
	// MinMaxLag and MaxMaxLag bound snapshot.from.max_lag.
	MinMaxLag = time.Second
	MaxMaxLag = 7 * 24 * time.Hour
	// MinDrillEvery and MaxDrillEvery bound drill.every.
	MinDrillEvery = time.Second
	MaxDrillEvery = 366 * 24 * time.Hour
)

// durationRange checks a duration that is 0 (the default) or within
// [lo, hi].
func durationRange(key string, d Duration, lo, hi time.Duration) error {
	if d != 0 && (d.D() < lo || d.D() > hi) {
		return fmt.Errorf("%s: %s is not between %s and %s", key, d, lo, hi)
	}
	return nil
}

// wholeRanges are the allowed values of whole-number keys whose range is
// narrower than their type's, by key.
var wholeRanges = map[string][2]int64{
	"server_id":     {1, math.MaxUint32},
	"port":          {1, 65535},
	"threads":       {1, MaxThreads},
	"chunk_rows":    {1, math.MaxInt64},
	"keep":          {0, math.MaxInt64},
	"min_snapshots": {0, math.MaxInt64},
	"keep_daily":    {0, math.MaxInt64},
	"keep_weekly":   {0, math.MaxInt64},
	"keep_monthly":  {0, math.MaxInt64},
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// checkScalars walks a YAML document along the type it decodes into and
// checks every scalar that is a number, a size or a duration, with an
// error that names the key: a whole number must be one (9001.7 is not) and
// fit its type; a value with its own UnmarshalYAML must parse. Keys it
// does not know are left to the decoder, which names them.
func checkScalars(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		v := reflect.New(t).Interface().(yaml.Unmarshaler)
		if err := v.UnmarshalYAML(n); err != nil {
			// "line 5: invalid size …" becomes "line 5: archive.max_file_size: invalid size …".
			if line, rest, ok := strings.Cut(err.Error(), ": "); ok && strings.HasPrefix(line, "line ") {
				return fmt.Errorf("%s: %s: %s", line, path, rest)
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := checkScalars(c, t, path); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		if t.Kind() != reflect.Struct {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			for j := 0; j < t.NumField(); j++ {
				f := t.Field(j)
				if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == k {
					p := k
					if path != "" {
						p = path + "." + k
					}
					if err := checkScalars(n.Content[i+1], f.Type, p); err != nil {
						return err
					}
					break
				}
			}
		}
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice {
			return nil
		}
		for i, c := range n.Content {
			if err := checkScalars(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		return checkWhole(n, t, path)
	}
	return nil
}

// checkWhole checks a scalar meant for an integer field.
func checkWhole(n *yaml.Node, t reflect.Type, path string) error {
	var lo, hi int64
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		lo, hi = -1<<(bits-1), 1<<(bits-1)-1
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		lo, hi = 0, 1<<t.Bits()-1
	default:
		return nil
	}
	want := func() error {
		wlo, whi := lo, hi
		if r, ok := wholeRanges[path[strings.LastIndexByte(path, '.')+1:]]; ok {
			wlo, whi = r[0], r[1]
		}
		return fmt.Errorf("line %d: %s: %s is not a whole number from %d to %d", n.Line, path, n.Value, wlo, whi)
	}
	switch n.ShortTag() {
	case "!!float":
		// 1e6 is a whole number; 9001.7 is not, and yaml.v3 would take
		// it as 9001.
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil || f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
			return want()
		}
	case "!!int":
		v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil || v < lo || v > hi {
			return want()
		}
	}
	return nil
}

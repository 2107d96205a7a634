package storage

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Settings is a resolved `storage` block of the config (config.ResolveStorage):
// the store, the keys and the shipping settings, with secrets read and
// paths made absolute.
type Settings struct {
	S3 S3Settings
	// RecipientsFile holds the age recipients (public keys) objects are
	// encrypted to, IdentityFile the age identities (private keys) that
	// decrypt them; empty when not configured. See LoadKeys.
	RecipientsFile, IdentityFile string
	// LocalKeep is how many bytes of sealed, uploaded files the local
	// archive directory keeps.
	LocalKeep int64
	// UploadInterval is how often the active file's new bytes are shipped.
	UploadInterval time.Duration
}

// S3Settings says how to reach an S3 bucket (storage/s3.New).
type S3Settings struct {
	Bucket string
	// Prefix is put before every object name; it ends with a slash unless
	// it is empty.
	Prefix string
	// Endpoint is the URL of the store: https://host[:port], or
	// http://host[:port] for a loopback host; empty for AWS.
	Endpoint  string
	Region    string
	AccessKey string
	SecretKey string
	// PathStyle addresses the bucket in the path (https://host/bucket/key)
	// rather than in the host name (https://bucket.host/key).
	PathStyle bool
	// CAFile holds PEM certificates trusted besides the system's.
	CAFile string
}

// Encrypted tells whether objects are to be encrypted.
func (s *Settings) Encrypted() bool { return s.RecipientsFile != "" || s.IdentityFile != "" }

// Keys loads the keys of the settings (LoadKeys); nil without encryption.
func (s *Settings) Keys() (*Keys, error) {
	if !s.Encrypted() {
		return nil, nil
	}
	return LoadKeys(s.RecipientsFile, s.IdentityFile)
}

// Stack wraps a backend in the standard decorators, from the inside out:
// a Timeout of DefaultTimeout, a Limit of DefaultConnections, and Retry
// with its default delays. Retry is outermost so that it does not hold a
// slot of the Limit while it waits; Timeout innermost so that waiting for
// a slot is not taken for a stalled store.
func Stack(b Backend, log *slog.Logger) Backend {
	return NewRetry(NewLimit(NewTimeout(b, DefaultTimeout), DefaultConnections), log)
}

// ParseEndpoint checks an S3 endpoint URL and returns its host[:port] and
// whether it uses TLS. An empty endpoint is AWS's. http:// is allowed only
// for a loopback host (localhost, 127.0.0.0/8, ::1): anywhere else, the
// credentials and the data would cross the network in the clear.
func ParseEndpoint(endpoint string) (host string, secure bool, err error) {
	if endpoint == "" {
		return "s3.amazonaws.com", true, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", false, fmt.Errorf("%q is not a URL such as https://s3.example.net", endpoint)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fmt.Errorf("%q: give only the scheme, host and port (the bucket and prefix have their own keys)", endpoint)
	}
	switch u.Scheme {
	case "https":
		return u.Host, true, nil
	case "http":
		if !IsLoopback(u.Hostname()) {
			return "", false, fmt.Errorf("%q: http:// is allowed only for a loopback host (localhost, 127.0.0.1, ::1); use https://", endpoint)
		}
		return u.Host, false, nil
	}
	return "", false, fmt.Errorf("%q: the scheme must be https:// (or http:// for a loopback host)", endpoint)
}

// IsLoopback tells whether host is localhost or a loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var bucketRe = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// CheckBucket checks an S3 bucket name: 3 to 63 lowercase letters,
// digits, dots and hyphens, beginning and ending with a letter or digit.
func CheckBucket(name string) error {
	if !bucketRe.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("%q is not a bucket name (3 to 63 lowercase letters, digits, '.' and '-')", name)
	}
	return nil
}

// NormalizePrefix checks an object name prefix of a store and gives it its
// final slash: "understudy" and "understudy/" are both "understudy/".
func NormalizePrefix(prefix string) (string, error) {
	if prefix == "" {
		return "", nil
	}
	p := strings.TrimSuffix(prefix, "/")
	if err := ValidName(p); err != nil {
		return "", fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return p + "/", nil
}

// Package s3test starts real S3 servers for integration tests: versitygw
// (github.com/versity/versitygw) with its posix backend, on 127.0.0.1 on a
// free port, with its data in a fresh temporary directory that is removed
// when the test ends. Each server has one bucket, and an object's bytes
// are the file Root/Bucket/KEY, where a test can read or damage them.
//
// versitygw must be installed, in $PATH or in $(go env GOPATH)/bin; when
// it is not, Start fails the test rather than skipping it, naming the
// install command (scripts/test.sh runs it).
//
// The package is Linux-only: servers run in their own process group with
// a parent-death signal, so that they do not outlive the test binary.
package s3test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-db/understudy/storage"
)

// InstallHint says how to install versitygw.
const InstallHint = "install it with `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0` (scripts/test.sh does)"

const (
	readyTimeout = 20 * time.Second
	startTries   = 3
	// Region is the region versitygw answers for.
	Region = "us-east-1"
)

// Options configures a server.
type Options struct {
	// TLS serves https with a new self-signed certificate for 127.0.0.1
	// and localhost, which is written to CAFile.
	TLS bool
}

// Server is a versitygw started by Start. Its methods are meant to be
// called from the test goroutine.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT (https:// with TLS).
	Endpoint             string
	Port                 int
	Bucket               string
	AccessKey, SecretKey string
	// Root is versitygw's posix root: Root/Bucket/KEY holds an object.
	Root string
	// CAFile is the server's certificate, with TLS.
	CAFile string

	dir, bin string
	opts     Options
	sidecar  bool // metadata in a sidecar directory, not in xattrs
	proc     *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Binary finds versitygw in $PATH or in $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("s3test: versitygw is not in $PATH nor in %s: %s", strings.Join(dirs, ", "), InstallHint)
}

// Start starts a server with a bucket, and registers a cleanup that kills
// it and removes its directory.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		tb.Fatal(err)
	}
	began := time.Now()
	dir, err := os.MkdirTemp("", fmt.Sprintf("understudy-s3test-%d-", os.Getpid()))
	if err != nil {
		tb.Fatalf("s3test: %v", err)
	}
	s := &Server{Bucket: "understudy-test", AccessKey: "s3test" + randHex(4), SecretKey: randHex(20),
		Root: filepath.Join(dir, "root"), dir: dir, bin: bin, opts: opts}
	tb.Cleanup(func() {
		s.kill()
		if tb.Failed() {
			tb.Logf("s3test: tail of %s:\n%s", s.logPath(), s.logTail())
		}
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("s3test: removing %s: %v", dir, err)
		}
	})
	for _, d := range []string{filepath.Join(s.Root, s.Bucket), filepath.Join(dir, "meta")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatalf("s3test: %v", err)
		}
	}
	if s.sidecar = !xattrs(dir); s.sidecar {
		tb.Logf("s3test: %s has no user xattrs: versitygw keeps metadata in a sidecar directory, where an ETag may change before the data does", dir)
	}
	if opts.TLS {
		if err := s.makeCert(); err != nil {
			tb.Fatalf("s3test: %v", err)
		}
	}
	for try := 1; ; try++ {
		if s.Port, err = freePort(); err != nil {
			tb.Fatalf("s3test: %v", err)
		}
		scheme := "http"
		if opts.TLS {
			scheme = "https"
		}
		s.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, s.Port)
		if err = s.boot(); err == nil {
			break
		}
		if try == startTries || !strings.Contains(s.logTail(), "address already in use") {
			tb.Fatalf("s3test: %v\n--- %s ---\n%s", err, s.logPath(), s.logTail())
		}
	}
	tb.Logf("s3test: versitygw ready at %s in %v (root %s)", s.Endpoint, time.Since(began).Round(time.Millisecond), s.Root)
	return s
}

// Settings returns the settings of the server's bucket, with prefix.
func (s *Server) Settings(prefix string) storage.S3Settings {
	return storage.S3Settings{Bucket: s.Bucket, Prefix: prefix, Endpoint: s.Endpoint, Region: Region,
		AccessKey: s.AccessKey, SecretKey: s.SecretKey, PathStyle: true, CAFile: s.CAFile}
}

// ObjectPath returns the file that holds the object of key KEY (the prefix
// and the name).
func (s *Server) ObjectPath(key string) string {
	return filepath.Join(s.Root, s.Bucket, filepath.FromSlash(key))
}

// Kill stops the server with SIGKILL and waits for it to exit.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.kill()
}

// Restart starts the server again, after Kill, on the same port and with
// the same data.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.kill()
	var err error
	for try := 0; try < 50; try++ { // the port may take a moment to be free
		if err = s.boot(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("s3test: restart: %v\n--- %s ---\n%s", err, s.logPath(), s.logTail())
}

// RestartAfter starts the server again after d, in the background (after
// Kill, or killing it first if it runs again); wait waits for that and
// reports a failure to restart as an error of the test.
func (s *Server) RestartAfter(tb testing.TB, d time.Duration) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(d)
		s.kill()
		var err error
		for try := 0; try < 50; try++ {
			if err = s.boot(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		tb.Errorf("s3test: restart: %v\n--- %s ---\n%s", err, s.logPath(), s.logTail())
	}()
	return func() { <-done }
}

// Pause stops the server with SIGSTOP: connections stay open but nothing
// answers, as when a store hangs. Resume continues it.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	s.signal(syscall.SIGSTOP)
	// The signal is delivered asynchronously: wait until the process is
	// stopped, so that nothing is answered after Pause returns.
	deadline := time.Now().Add(5 * time.Second)
	for !s.stopped() {
		if time.Now().After(deadline) {
			tb.Errorf("s3test: versitygw (pid %d) did not stop after SIGSTOP", s.proc.cmd.Process.Pid)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// stopped tells whether every thread of the server is stopped (state T in
// /proc).
func (s *Server) stopped() bool {
	if !s.running() {
		return false
	}
	dir := fmt.Sprintf("/proc/%d/task", s.proc.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false
		}
		// pid (comm) state …: the state follows the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// Resume continues a paused server.
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	s.signal(syscall.SIGCONT)
}

func (s *Server) args() []string {
	args := []string{"--port", "127.0.0.1:" + strconv.Itoa(s.Port), "--quiet"}
	if s.opts.TLS {
		args = append(args, "--cert", filepath.Join(s.dir, "cert.pem"), "--key", filepath.Join(s.dir, "key.pem"))
	}
	args = append(args, "posix")
	if s.sidecar {
		args = append(args, "--sidecar", filepath.Join(s.dir, "meta"))
	}
	return append(args, s.Root)
}

// xattrs tells whether dir's file system keeps user extended attributes,
// where versitygw keeps an object's metadata (ETag, …) with its data, so
// that the two change together. Elsewhere it needs a sidecar directory,
// where a reader can see a new object's ETag with the old object's data.
func xattrs(dir string) bool {
	p := filepath.Join(dir, "xattr-probe")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return false
	}
	defer os.Remove(p)
	return syscall.Setxattr(p, "user.s3test", []byte("1"), 0) == nil
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "versitygw.log") }

// boot starts versitygw and waits until it accepts connections.
func (s *Server) boot() error {
	out, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args()...)
	// The root account's keys go in the environment, not on the command
	// line that ps shows.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	out.Close()
	if err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("versitygw on port %d exited during startup: %v", s.Port, p.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("versitygw on port %d not ready after %v: %w", s.Port, readyTimeout, err)
		}
	}
}

func (s *Server) running() bool {
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}

func (s *Server) signal(sig syscall.Signal) {
	if s.running() {
		_ = syscall.Kill(-s.proc.cmd.Process.Pid, sig)
	}
}

func (s *Server) kill() {
	if !s.running() {
		return
	}
	s.signal(syscall.SIGKILL)
	<-s.proc.done
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// makeCert writes a self-signed certificate for 127.0.0.1 and localhost.
func (s *Server) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "s3test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	s.CAFile = filepath.Join(s.dir, "cert.pem")
	if err := os.WriteFile(s.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

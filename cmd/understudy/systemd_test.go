package main

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

const unitPath = "../../deploy/systemd/understudy.service"

// unitSettings reads a systemd unit file: "Section.Key" to its values, in
// order (a key may be given several times).
func unitSettings(t *testing.T, text string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
		case strings.HasSuffix(l, `\`):
			t.Fatalf("%s:%d: continued lines are not expected", unitPath, n)
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a setting: %q", unitPath, n, l)
			}
			out[section+"."+strings.TrimSpace(k)] = append(out[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return out
}

// TestSystemdUnit checks deploy/systemd/understudy.service: it keeps the
// settings the README relies on, `systemd-analyze verify` accepts it
// without a word (it only warns about unknown keys and bad values), its
// sandbox rates "OK" in `systemd-analyze security`, and the binary it starts,
// with its arguments, stops on its KillSignal well within TimeoutStopSec with
// exit status 0 (so Restart=on-failure leaves it stopped and the unit is not
// marked failed). A missing systemd-analyze fails the test: scripts/test.sh
// installs it.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed to check the unit (scripts/test.sh installs the systemd package): %v", err)
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	set := unitSettings(t, unit)
	one := func(key string) string {
		if vs := set[key]; len(vs) > 0 {
			return vs[len(vs)-1]
		}
		return "(unset)"
	}
	for key, want := range map[string]string{
		"Service.ExecStart":               "/usr/local/bin/understudy run --config /etc/understudy/understudy.yaml",
		"Service.User":                    "understudy",
		"Service.Group":                   "understudy",
		"Service.Restart":                 "on-failure",
		"Service.StateDirectory":          "understudy",
		"Service.ConfigurationDirectory":  "understudy",
		"Service.ProtectSystem":           "strict",
		"Service.ReadWritePaths":          "/var/lib/understudy",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectKernelModules":    "yes",
		"Service.ProtectKernelLogs":       "yes",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Service.LockPersonality":         "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.CapabilityBoundingSet":   "",
		"Service.UMask":                   "0077",
		"Service.KillSignal":              "SIGTERM",
		"Install.WantedBy":                "multi-user.target",
	} {
		if got := one(key); got != want {
			t.Errorf("%s: %s=%q, want %q", unitPath, key, got, want)
		}
	}
	if got := one("Service.Type"); got != "simple" && got != "exec" && got != "notify" {
		t.Errorf("%s: Type=%s", unitPath, got)
	}
	if got := set["Service.SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
		t.Errorf("%s: SystemCallFilter=%q, want @system-service first", unitPath, got)
	}
	stopTimeout, err := time.ParseDuration(one("Service.TimeoutStopSec"))
	if err != nil {
		t.Fatalf("%s: TimeoutStopSec: %v", unitPath, err)
	}

	// verify needs ExecStart's binary: the unit, with this build's.
	dir := t.TempDir()
	bin := filepath.Join(dir, "understudy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	local := filepath.Join(dir, "understudy.service")
	if err := os.WriteFile(local, []byte(strings.Replace(unit, "ExecStart=/usr/local/bin/understudy ", "ExecStart="+bin+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", local).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure 0 to 10 (10 = unprotected); 2.0 and below rate "OK".
	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", local).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	} else if i := bytes.Index(out, []byte("Overall exposure level")); i >= 0 {
		t.Logf("%s", bytes.TrimSpace(out[i:]))
	}

	// The ExecStart command line, with a config of the test's, stopped
	// the way systemd stops it.
	args := strings.Fields(one("Service.ExecStart"))[1:]
	p := startPrimary(t, 1, 1)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9801})
	addr := freeAddr(t)
	if b, err = os.ReadFile(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), `listen: "off"`, "listen: "+addr, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range args {
		if args[i] == "/etc/understudy/understudy.yaml" {
			args[i] = cfg
		}
	}
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	cmd := exec.Command(bin, args...)
	var logs mariadbtest.LogBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/status"); err == nil {
			resp.Body.Close()
			if st := httpStatus(t, addr)["db"]; st.State == understudy.StateStreaming && st.Position == p.GTIDBinlogPos(t) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("understudy run did not stream within 30 s:\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		took := time.Since(start)
		if err != nil {
			t.Fatalf("understudy run exited with %v on SIGTERM, want status 0:\n%s", err, logs.String())
		}
		t.Logf("understudy run stopped in %s on SIGTERM (TimeoutStopSec=%s)", took.Round(time.Millisecond), stopTimeout)
		if took > stopTimeout/4 {
			t.Errorf("stopping took %s, too close to TimeoutStopSec=%s", took, stopTimeout)
		}
	case <-time.After(stopTimeout):
		t.Fatalf("understudy run still running %s after SIGTERM (systemd would SIGKILL it now):\n%s", stopTimeout, logs.String())
	}
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeygen: understudy keygen writes a key pair that stock age uses as
// it is, with age.key readable by its owner only, and never overwrites
// one.
func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var out, errb strings.Builder
	if code := run([]string{"keygen", "--dir", dir}, &out, &errb); code != exitOK {
		t.Fatalf("keygen: exit %d: %s", code, errb.String())
	}
	key, pub := filepath.Join(dir, "age.key"), filepath.Join(dir, "age.pub")
	for path, mode := range map[string]os.FileMode{key: 0o600, pub: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Fatalf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	rcpt, _ := os.ReadFile(pub)
	if !strings.Contains(out.String(), strings.TrimSpace(string(rcpt))) {
		t.Fatalf("keygen did not print the recipient %s:\n%s", rcpt, out.String())
	}
	before, _ := os.ReadFile(key)

	errb.Reset()
	if code := run([]string{"keygen", "--dir", dir}, &out, &errb); code != exitError || !strings.Contains(errb.String(), "refusing to overwrite") || strings.Count(errb.String(), "\n") != 1 {
		t.Fatalf("second keygen: exit %d, stderr %q; want exit 1 and one line refusing", code, errb.String())
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(after, before) {
		t.Fatal("the refused keygen changed age.key")
	}
	if code := run([]string{"keygen"}, &out, &errb); code != exitUsage {
		t.Fatalf("keygen without --dir: exit %d, want %d", code, exitUsage)
	}

	// Stock age takes the files as they are.
	ageBin, err := exec.LookPath("age")
	if err != nil {
		t.Fatalf("stock age is not installed (apt-get install -y age; scripts/test.sh does): %v", err)
	}
	enc := exec.Command(ageBin, "-R", pub)
	enc.Stdin = strings.NewReader("a row\n")
	sealed, err := enc.Output()
	if err != nil {
		t.Fatalf("age -R %s: %v", pub, err)
	}
	dec := exec.Command(ageBin, "-d", "-i", key)
	dec.Stdin = bytes.NewReader(sealed)
	if plain, err := dec.Output(); err != nil || string(plain) != "a row\n" {
		t.Fatalf("age -d -i %s: %q, %v", key, plain, err)
	}
}

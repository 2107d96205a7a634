package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/understudy-db/understudy/storage"
)

type keygenOptions struct {
	dir  string
	json bool
}

// cmdKeygen writes a new age key pair for encryption at rest.
func cmdKeygen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o keygenOptions
	fs := newFlagSet("keygen", stderr)
	fs.outDir(&o.dir)
	fs.json(&o.json)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return runKeygen(o, stdout)
}

func runKeygen(o keygenOptions, stdout io.Writer) error {
	rcpt, err := storage.GenerateKeys(o.dir, time.Now())
	if err != nil {
		return err
	}
	key, pub := filepath.Join(o.dir, storage.IdentityFileName), filepath.Join(o.dir, storage.RecipientsFileName)
	if o.json {
		return json.NewEncoder(stdout).Encode(map[string]string{"recipient": rcpt, "identity_file": key, "recipients_file": pub})
	}
	fmt.Fprintf(stdout, "wrote %s (keep it off the archiving host, and safe: without it the backups cannot be read)\nwrote %s: %s\n", key, pub, rcpt)
	fmt.Fprintf(stdout, "storage.encryption.recipients_file: %s on the archiving host; identity_file: %s where you restore\n", pub, key)
	return nil
}

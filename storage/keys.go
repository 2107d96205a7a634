package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
)

// Keys are the age keys of encryption at rest: the recipients (public
// keys) that objects are encrypted to, enough to write; and the identities
// (private keys) that decrypt them, needed only to read.
type Keys struct {
	Recipients []age.Recipient
	Identities []age.Identity
}

// LoadKeys reads the recipients file (age public keys, "age1…", one a
// line, with # comments) and the identity file (as age-keygen writes it);
// either may be empty, not both.
func LoadKeys(recipientsFile, identityFile string) (*Keys, error) {
	if recipientsFile == "" && identityFile == "" {
		return nil, errors.New("storage encryption: neither a recipients file nor an identity file")
	}
	k := &Keys{}
	if recipientsFile != "" {
		f, err := os.Open(recipientsFile)
		if err != nil {
			return nil, fmt.Errorf("read age recipients: %w", err)
		}
		defer f.Close()
		if k.Recipients, err = age.ParseRecipients(f); err != nil {
			return nil, fmt.Errorf("read age recipients from %s: %w", recipientsFile, err)
		}
	}
	if identityFile != "" {
		f, err := os.Open(identityFile)
		if err != nil {
			return nil, fmt.Errorf("read age identity: %w", err)
		}
		defer f.Close()
		if k.Identities, err = age.ParseIdentities(f); err != nil {
			return nil, fmt.Errorf("read age identity from %s: %w", identityFile, err)
		}
	}
	return k, nil
}

// Key file names in the directory of GenerateKeys.
const (
	IdentityFileName   = "age.key"
	RecipientsFileName = "age.pub"
)

// GenerateKeys makes a new X25519 age key pair in dir (created with mode
// 0700 if missing): dir/age.key, the identity, in age-keygen's format with
// mode 0600; and dir/age.pub, its recipient on one line, mode 0644 (a
// public key, meant to be copied to the hosts that write backups). It
// refuses to overwrite either file. It returns the recipient.
func GenerateKeys(dir string, now time.Time) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	keyPath, pubPath := filepath.Join(dir, IdentityFileName), filepath.Join(dir, RecipientsFileName)
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", fmt.Errorf("%s exists: refusing to overwrite a key (remove it first if it is really unused: objects encrypted to it cannot be read without it)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", err
	}
	rcpt := id.Recipient().String()
	key := fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", now.UTC().Format(time.RFC3339), rcpt, id.String())
	if err := writeNew(keyPath, []byte(key), 0o600); err != nil {
		return "", err
	}
	if err := writeNew(pubPath, []byte(rcpt+"\n"), 0o644); err != nil {
		os.Remove(keyPath)
		return "", err
	}
	d, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer d.Close()
	return rcpt, d.Sync()
}

// writeNew creates path (which must not exist) with data, fsynced.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

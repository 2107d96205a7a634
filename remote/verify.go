package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/understudy-db/understudy/storage"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	Source string `json:"source"`
	// Objects and Bytes count what was read back (stored sizes).
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// Content tells whether the objects were also decrypted and their
	// content checked.
	Content  bool     `json:"content"`
	Problems []string `json:"problems"`
}

// Verify re-reads every object that the source's newest commit points
// name: its stored bytes against the sha256 recorded for them and, with
// content (which needs the identity of an encrypted store), the content
// decrypted and decompressed, each sealed file whole against its sha256 and
// each snapshot file against its own. Objects that cannot be read are
// problems; a store that cannot be listed is an error.
func Verify(ctx context.Context, st Store, source string, content bool) (VerifyReport, error) {
	rep := VerifyReport{Source: source, Content: content}
	v, err := OpenView(ctx, st, source)
	if err != nil {
		return rep, err
	}
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	check := func(segs []Segment) (string, bool) {
		whole := sha256.New()
		ok := true
		for _, g := range segs {
			n, sum, err := storedSHA(ctx, st.Plain, g.Name)
			rep.Objects++
			rep.Bytes += n
			switch {
			case err != nil:
				problem("%v", err)
				ok = false
				continue
			case n != g.StoredSize || sum != g.StoredSHA256:
				problem("%s: %d bytes, sha256 %s; its record says %d bytes, %s", where(st.Plain, g.Name), n, sum, g.StoredSize, g.StoredSHA256)
				ok = false
				continue
			}
			if content {
				plain, err := v.readSegment(ctx, g)
				if err != nil {
					problem("%v", err)
					ok = false
					continue
				}
				whole.Write(plain[:g.To-g.From])
			}
		}
		return hex.EncodeToString(whole.Sum(nil)), ok
	}
	for _, f := range v.Man.Files {
		sum, ok := check(f.Segments)
		if content && ok && sum != f.SHA256 {
			problem("%s: rebuilt from its segments it has sha256 %s; the manifest says %s", f.Name, sum, f.SHA256)
		}
	}
	if v.Tip.Seq > 0 {
		check(v.Tip.Segments)
	}
	snaps, err := ListSnapshots(ctx, st, source)
	if err != nil {
		problem("snapshots: %v", err)
	}
	for _, s := range snaps {
		for _, o := range s.Objects.Objects {
			name := snapshotObject(source, s.ID, o.Path)
			n, sum, err := storedSHA(ctx, st.Plain, name)
			rep.Objects++
			rep.Bytes += n
			switch {
			case err != nil:
				problem("%v", err)
				continue
			case n != o.StoredSize || sum != o.StoredSHA256:
				problem("%s: %d bytes, sha256 %s; objects.json says %d bytes, %s", where(st.Plain, name), n, sum, o.StoredSize, o.StoredSHA256)
				continue
			}
			if content {
				b := st.Plain
				if o.Encrypted {
					b = st.data()
				}
				n, sum, err := storedSHA(ctx, b, name)
				switch {
				case err != nil:
					problem("%v", err)
				case n != o.Size || sum != o.SHA256:
					problem("%s: its content has %d bytes, sha256 %s; objects.json says %d bytes, %s", where(st.Plain, name), n, sum, o.Size, o.SHA256)
				}
			}
		}
	}
	return rep, nil
}

// storedSHA reads an object whole and returns its size and sha256.
func storedSHA(ctx context.Context, b storage.Backend, name string) (int64, string, error) {
	rc, err := b.Get(ctx, name, 0, -1)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return 0, "", fmt.Errorf("%s: missing (a commit point names it)", where(b, name))
		}
		return 0, "", err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return n, "", fmt.Errorf("%s: %w", where(b, name), err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

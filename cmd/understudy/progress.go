package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progressBar draws one line of progress on a terminal and stays silent
// otherwise (logs carry the information there).
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	on    bool
	start time.Time
	last  time.Time
}

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, on: ok && term.IsTerminal(int(f.Fd())), start: time.Now()}
}

// update draws done/total with a label; extra is appended.
func (p *progressBar) update(label string, done, total int64, extra string) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	n := int(frac * width)
	eta := "?"
	if frac > 0 {
		elapsed := time.Since(p.start)
		eta = (time.Duration(float64(elapsed)/frac) - elapsed).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %s ETA %s   ", label, strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, extra, eta)
}

// done ends the line.
func (p *progressBar) done() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}

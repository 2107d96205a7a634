package remote

import (
	"context"
	"sync"
)

// parallel calls fn(ctx, w, i) for i in [0, n), on up to workers
// goroutines at once (w, in [0, workers), names the goroutine, for state
// it reuses). The first error cancels the calls not yet made, and is
// returned.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, w, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for w := range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, w, i); err != nil {
					once.Do(func() { first = err })
					cancel()
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

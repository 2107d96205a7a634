// Command lag measures commit-to-durable lag: the time from a commit
// returning on the primary to that transaction being fsynced in understudy's
// archive. It runs the archiver in-process against a primary on loopback;
// bench/archive.sh runs it under a sysbench write load. With --s3-endpoint
// it also ships the archive to that store (remote.Shipper, encrypted to
// --recipients) and measures commit-to-store lag: until a commit point of
// the store holds the transaction (bench/storage.sh).
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archiver"
	"github.com/understudy-db/understudy/remote"
	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/s3"
)

func main() {
	port := flag.Int("port", 3306, "primary port on 127.0.0.1")
	user := flag.String("user", "bench", "user (needs REPLICATION SLAVE and INSERT)")
	password := flag.String("password", "benchpw", "password")
	dir := flag.String("dir", "", "archive directory (required)")
	samples := flag.Int("samples", 1000, "commits to measure")
	interval := flag.Duration("sync-interval", archiver.DefaultSyncInterval, "archive sync interval")
	semi := flag.Bool("semi-sync", false, "fsync every transaction (semi-sync mode)")
	flag.StringVar(&store.endpoint, "s3-endpoint", "", "also ship to this S3 endpoint (keys in $TEST_S3_ACCESS, $TEST_S3_SECRET)")
	flag.StringVar(&store.bucket, "s3-bucket", "", "the bucket")
	flag.StringVar(&store.recipients, "recipients", "", "age recipients file to encrypt to")
	flag.DurationVar(&store.interval, "upload-interval", time.Second, "storage.upload_interval")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "lag: --dir is required")
		os.Exit(2)
	}
	if err := run(*port, *user, *password, *dir, *samples, *interval, *semi); err != nil {
		fmt.Fprintln(os.Stderr, "lag:", err)
		os.Exit(1)
	}
}

var store struct {
	endpoint, bucket, recipients string
	interval                     time.Duration
}

// ship starts shipping dir to the store of the flags; nil without one.
func ship(ctx context.Context, dir string) (*remote.Shipper, error) {
	if store.endpoint == "" {
		return nil, nil
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := s3.New(storage.S3Settings{Bucket: store.bucket, Prefix: "lag/", Endpoint: store.endpoint, Region: "us-east-1",
		AccessKey: os.Getenv("TEST_S3_ACCESS"), SecretKey: os.Getenv("TEST_S3_SECRET"), PathStyle: true})
	if err != nil {
		return nil, err
	}
	st := remote.Store{Plain: storage.Stack(b, log)}
	if store.recipients != "" {
		keys, err := storage.LoadKeys(store.recipients, "")
		if err != nil {
			return nil, err
		}
		st.Enc = storage.NewEncrypted(st.Plain, keys)
	}
	sh := &remote.Shipper{Source: "lag", Dir: dir, Store: st, Interval: store.interval, Writer: fmt.Sprintf("lag%d", os.Getpid()), Log: log}
	go sh.Run(ctx)
	return sh, nil
}

func run(port int, user, password, dir string, samples int, interval time.Duration, semi bool) error {
	src := understudy.Source{Name: "lag", Host: "127.0.0.1", Port: port, User: user, Password: password, ServerID: 9902, Heartbeat: time.Second, SemiSync: semi}
	a := archiver.New(src, dir, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
	a.SyncInterval = interval
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/", user, password, port))
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS sbtest.lag (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))"); err != nil {
		return err
	}
	// wait for the archiver to catch up with what the primary had
	var startPos string
	if err := conn.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&startPos); err != nil {
		return err
	}
	target, err := understudy.ParsePosition(startPos)
	if err != nil {
		return err
	}
	for a.Writer() == nil || !a.Writer().Durable().Position.ContainsPosition(target) {
		time.Sleep(10 * time.Millisecond)
	}
	sh, err := ship(ctx, dir)
	if err != nil {
		return err
	}
	if sh != nil {
		for !sh.Status().Position.ContainsPosition(target) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	lags := make([]time.Duration, 0, samples)
	var storeLags []time.Duration
	for i := 0; i < samples; i++ {
		if _, err := conn.ExecContext(ctx, "INSERT INTO sbtest.lag (at) VALUES (NOW(6))"); err != nil {
			return err
		}
		t0 := time.Now()
		var last string
		if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&last); err != nil {
			return err
		}
		g, err := understudy.ParseGTID(last)
		if err != nil {
			return err
		}
		w := a.Writer()
		for {
			ch := w.Notify()
			if w.Durable().Position.Contains(g) {
				break
			}
			select {
			case <-ch:
			case <-time.After(30 * time.Second):
				return fmt.Errorf("GTID %s not durable after 30s (status %+v)", g, a.Status())
			case err := <-done:
				return fmt.Errorf("archiver stopped: %v", err)
			}
		}
		lags = append(lags, time.Since(t0))
		if sh != nil {
			for !sh.Status().Position.Contains(g) {
				if time.Since(t0) > 60*time.Second {
					return fmt.Errorf("GTID %s not in the store after 60s (%+v)", g, sh.Status())
				}
				time.Sleep(2 * time.Millisecond)
			}
			storeLags = append(storeLags, time.Since(t0))
		}
		time.Sleep(time.Duration(5+rand.IntN(50)) * time.Millisecond) // de-phase from the syncs
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	q := func(p float64) time.Duration { return lags[int(p*float64(len(lags)-1))] }
	fmt.Printf("commit-to-durable lag over %d commits (sync_interval %s, semi_sync %v): p50 %s  p99 %s  max %s\n",
		len(lags), interval, semi, q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), lags[len(lags)-1].Round(time.Microsecond))
	if len(storeLags) > 0 {
		sort.Slice(storeLags, func(i, j int) bool { return storeLags[i] < storeLags[j] })
		q := func(p float64) time.Duration { return storeLags[int(p*float64(len(storeLags)-1))] }
		fmt.Printf("commit-to-store lag over %d commits (upload_interval %s): p50 %s  p99 %s  max %s\n",
			len(storeLags), store.interval, q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), storeLags[len(storeLags)-1].Round(time.Millisecond))
	}
	cancel()
	return <-done
}

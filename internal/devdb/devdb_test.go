package devdb

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func mustExec(t *testing.T, url, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

func TestClusterKeepsItsDataAcrossRestartsAndCrashes(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(searchableTempDir(t), "pg")
	opts := Options{Dir: dir, Password: "s3cret-for-test"}
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, c.URL("postgres"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before stop')")
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	// Started again, it finds the data without a new initdb.
	c, err = Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, c.URL("postgres"), "INSERT INTO kept SELECT v || ' and after' FROM kept")

	// A killed postmaster leaves a stale postmaster.pid; the next Start copes.
	pidFile, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	c, err = Start(ctx, opts)
	if err != nil {
		t.Fatalf("start after SIGKILL: %v", err)
	}
	defer c.Stop(ctx)
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after restart and crash = %d, %v; want 2", n, err)
	}
	// Only the socket listens, and only the cluster's user may open it.
	fi, err := os.Stat(c.sockDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir mode %v, %v", fi.Mode().Perm(), err)
	}
	var listen string
	conn.QueryRow(ctx, "SHOW listen_addresses").Scan(&listen)
	if listen != "" {
		t.Fatalf("listen_addresses = %q, want none", listen)
	}
	// A wrong password is refused.
	bad := strings.Replace(c.URL("postgres"), "s3cret-for-test", "wrong", 1)
	if _, err := pgx.Connect(ctx, bad); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}

func TestLongDirectoryGetsAShortSocketPath(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(searchableTempDir(t), strings.Repeat("d", 60), strings.Repeat("e", 60), "pg")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Options{Dir: dir, Password: "pw-long", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	if len(c.sockDir) > maxSocketPath {
		t.Fatalf("socket dir %q too long", c.sockDir)
	}
	mustExec(t, c.URL("postgres"), "SELECT 1")
}

func TestStartNeedsAPassword(t *testing.T) {
	if _, err := Start(context.Background(), Options{Dir: t.TempDir()}); err == nil {
		t.Fatal("a cluster without a superuser password was started")
	}
}

// searchableTempDir is a t.TempDir that the postgres user (when we are root) can reach.
func searchableTempDir(t *testing.T) string {
	d := t.TempDir()
	os.Chmod(d, 0o755)
	os.Chmod(filepath.Dir(d), 0o755)
	return d
}

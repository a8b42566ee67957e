// Package devdb runs a private PostgreSQL cluster from the server binaries installed on the
// machine, for `vitalnexa dev` and for tests. The cluster listens only on a Unix socket in
// a directory of its own (mode 0700); every role needs a password.
package devdb

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configure a cluster.
type Options struct {
	Dir      string // cluster home: data in Dir/data, log in Dir/postgres.log
	Password string // of the superuser "postgres", set when the cluster is first made
	Logger   *slog.Logger
	// Fast trades durability for speed (fsync off): for throwaway test clusters only.
	Fast bool
}

// Cluster is a running private cluster.
type Cluster struct {
	opts    Options
	bin     string
	data    string
	sockDir string
	tmpSock bool
	cred    *syscall.Credential
	stopped bool
}

// maxSocketPath is the longest Unix socket path the kernel takes (108 with the NUL),
// minus room for PostgreSQL's ".s.PGSQL.5432.lock".
const maxSocketPath = 107 - len("/.s.PGSQL.5432.lock")

// FindBinDir finds the PostgreSQL server binaries: pg_config --bindir, then initdb on
// PATH, then the newest /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("devdb: PostgreSQL server binaries not found (install the Debian package postgresql, or put initdb on PATH)")
}

func versionOf(dir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	return v
}

// Start makes the cluster on first use and starts it, returning once it accepts
// connections. A later Start on the same Dir finds the data again; a server left running
// by a killed process is reused.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" || opts.Password == "" {
		return nil, errors.New("devdb: Dir and Password are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, bin: bin, data: filepath.Join(dir, "data")}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, errors.New("devdb: running as root, and there is no 'postgres' user to run PostgreSQL as; create one with: useradd --system postgres")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := c.chown(dir); err != nil {
		return nil, err
	}
	c.sockDir = filepath.Join(dir, "run")
	if len(c.sockDir) > maxSocketPath {
		// The socket path would be too long for the kernel: use a short one of our own.
		if c.sockDir, err = os.MkdirTemp("", "vnpg-"); err != nil {
			return nil, err
		}
		c.tmpSock = true
	}
	if err := os.MkdirAll(c.sockDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(c.sockDir, 0o700); err != nil {
		return nil, err
	}
	if err := c.chown(c.sockDir); err != nil {
		return nil, err
	}
	if err := c.checkReachable(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// checkReachable fails early, with advice, when the postgres user cannot reach Dir.
func (c *Cluster) checkReachable() error {
	if c.cred == nil {
		return nil
	}
	cmd := exec.Command("test", "-x", c.opts.Dir, "-a", "-w", c.opts.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("devdb: the postgres user cannot reach %s: every parent directory must be searchable by it (chmod o+x)", c.opts.Dir)
	}
	return nil
}

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// command runs a PostgreSQL tool as the cluster's user, in its own process group so that
// a Ctrl-C in the terminal reaches only us (we then stop the cluster ourselves).
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.Dir = c.opts.Dir
	return cmd
}

func (c *Cluster) initdb(ctx context.Context) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	pwfile := filepath.Join(c.opts.Dir, ".pwfile-"+hex.EncodeToString(rnd[:]))
	if err := os.WriteFile(pwfile, []byte(c.opts.Password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := c.chown(pwfile); err != nil {
		return err
	}
	c.opts.Logger.Info("creating PostgreSQL cluster", "dir", c.data)
	cmd := c.command(ctx, "initdb", "-D", c.data, "-U", "postgres", "--pwfile="+pwfile,
		"--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-instructions")
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.RemoveAll(c.data)
		return fmt.Errorf("devdb: initdb failed: %v\n%s", err, tail(out, 2000))
	}
	return nil
}

func (c *Cluster) serverOptions() string {
	o := []string{
		"-c listen_addresses=''",
		"-c unix_socket_directories='" + c.sockDir + "'",
		"-c unix_socket_permissions=0700",
		"-c max_connections=200",
		"-c shared_buffers=64MB",
		"-c log_timezone=UTC",
		"-c timezone=UTC",
	}
	if c.opts.Fast {
		o = append(o, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	return strings.Join(o, " ")
}

func (c *Cluster) start(ctx context.Context) error {
	if c.ping(ctx) == nil {
		c.opts.Logger.Info("PostgreSQL already running; reusing it", "dir", c.data)
		return nil
	}
	logFile := filepath.Join(c.opts.Dir, "postgres.log")
	c.opts.Logger.Info("starting PostgreSQL", "dir", c.data)
	cmd := c.command(ctx, "pg_ctl", "start", "-D", c.data, "-l", logFile, "-w", "-t", "60", "-s", "-o", c.serverOptions())
	if out, err := cmd.CombinedOutput(); err != nil {
		logTail, _ := os.ReadFile(logFile)
		return fmt.Errorf("devdb: pg_ctl start failed: %v\n%s\n%s", err, tail(out, 1000), tail(logTail, 2000))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.ping(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devdb: PostgreSQL does not accept connections: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// URL is a superuser connection to database over the cluster's socket.
func (c *Cluster) URL(database string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", c.opts.Password), Path: "/" + database,
		RawQuery: url.Values{"host": {c.sockDir}}.Encode()}
	return u.String()
}

// Stop shuts the cluster down (fast mode: running transactions are rolled back) and waits.
func (c *Cluster) Stop(ctx context.Context) error {
	if c.stopped {
		return nil
	}
	c.stopped = true
	cmd := c.command(ctx, "pg_ctl", "stop", "-D", c.data, "-m", "fast", "-w", "-t", "60", "-s")
	out, err := cmd.CombinedOutput()
	if c.tmpSock {
		os.RemoveAll(c.sockDir)
	}
	if err != nil {
		return fmt.Errorf("devdb: pg_ctl stop failed: %v\n%s", err, tail(out, 1000))
	}
	return nil
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

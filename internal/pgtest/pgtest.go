// Package pgtest gives tests a fresh, migrated database on real PostgreSQL: the cluster
// named by TEST_DATABASE_URL (a superuser connection), or else a private cluster that it
// starts itself, as `vitalnexa dev` does. Each test gets its own database, cloned from a
// template that is migrated once per cluster and set of migrations.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/devdb"
	"github.com/vitalnexa/vitalnexa/internal/jobs"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

var (
	adminURL string
	stopFn   func()
	setupErr error
	tmplOnce sync.Once
	tmplName string
	tmplErr  error
	seq      atomic.Int64
)

// Main runs the package's tests with a cluster available; call it from TestMain.
func Main(m *testing.M) {
	code := func() int {
		adminURL = os.Getenv("TEST_DATABASE_URL")
		if adminURL == "" {
			dir, err := os.MkdirTemp("", "vitalnexa-test-pg-")
			if err != nil {
				setupErr = err
				return m.Run()
			}
			defer os.RemoveAll(dir)
			os.Chmod(dir, 0o755) // the postgres user (when we are root) must reach it
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			c, err := devdb.Start(ctx, devdb.Options{Dir: filepath.Join(dir, "pg"), Password: rolePassword("postgres", dir), Fast: true})
			cancel()
			if err != nil {
				setupErr = fmt.Errorf("pgtest: start PostgreSQL: %w", err)
				return m.Run()
			}
			defer c.Stop(context.Background())
			adminURL = c.URL("postgres")
		}
		return m.Run()
	}()
	os.Exit(code)
}

// rolePassword derives a role's password from the cluster's identity, so that every test
// process sharing a TEST_DATABASE_URL agrees on it without storing one anywhere.
func rolePassword(role, seed string) string {
	sum := sha256.Sum256([]byte("vitalnexa-test/" + role + "/" + seed))
	return hex.EncodeToString(sum[:16])
}

func passwords() (owner, app string) {
	return rolePassword(postgres.OwnerRole, adminURL), rolePassword(postgres.AppRole, adminURL)
}

// migrationsHash names the template after the migrations it holds.
func migrationsHash() string {
	h := sha256.New()
	_ = fs.WalkDir(postgres.MigrationsFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(postgres.MigrationsFS(), p)
			h.Write([]byte(p))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func template(ctx context.Context) (string, error) {
	tmplOnce.Do(func() {
		name := "vitalnexa_tmpl_" + migrationsHash()
		owner, app := passwords()
		if tmplErr = postgres.Bootstrap(ctx, adminURL, postgres.BootstrapOptions{Database: name, OwnerPassword: owner, AppPassword: app}); tmplErr != nil {
			return
		}
		ownerURL, err := postgres.RoleURL(adminURL, postgres.OwnerRole, owner, name)
		if err != nil {
			tmplErr = err
			return
		}
		if tmplErr = postgres.Migrate(ctx, ownerURL, nil); tmplErr != nil {
			return
		}
		ownerPool, err := postgres.Open(ctx, ownerURL, 1)
		if err != nil {
			tmplErr = err
			return
		}
		tmplErr = jobs.Migrate(ctx, ownerPool, postgres.AppRole)
		ownerPool.Close()
		if tmplErr != nil {
			return
		}
		tmplName = name
	})
	return tmplName, tmplErr
}

// Database is one test's database and the connections a test may want.
type Database struct {
	Name     string
	AdminURL string // superuser
	OwnerURL string // vitalnexa_owner (migrations)
	AppURL   string // vitalnexa_app (the server)
	// DB is the server's view: app-role pool and a keyring whose keys are in the database.
	DB *postgres.DB
	// MasterKey wraps the database's keys.
	MasterKey []byte
}

// MustDatabase creates a fresh migrated database with its own keys, dropped when tb ends.
func MustDatabase(tb testing.TB) *Database {
	tb.Helper()
	if setupErr != nil {
		tb.Fatal(setupErr)
	}
	if adminURL == "" {
		tb.Fatal("pgtest: call pgtest.Main from TestMain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmpl, err := template(ctx)
	if err != nil {
		tb.Fatalf("pgtest: template: %v", err)
	}
	name := fmt.Sprintf("vitalnexa_t%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, seq.Add(1))
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close(ctx)
	// Cloning needs the template to have no other connections; serialise across processes.
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(7406212)"); err != nil {
		tb.Fatal(err)
	}
	_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s OWNER %s", name, tmpl, postgres.OwnerRole))
	admin.Exec(ctx, "SELECT pg_advisory_unlock(7406212)")
	if err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	owner, app := passwords()
	d := &Database{Name: name}
	d.AdminURL, _ = postgres.RoleURL(adminURL, mustUser(adminURL), mustPassword(adminURL), name)
	d.OwnerURL, _ = postgres.RoleURL(adminURL, postgres.OwnerRole, owner, name)
	d.AppURL, _ = postgres.RoleURL(adminURL, postgres.AppRole, app, name)
	d.MasterKey, _ = keyring.GenerateKey()
	w, err := keyring.NewLocalWrapper(d.MasterKey)
	if err != nil {
		tb.Fatal(err)
	}
	ownerPool := MustPool(tb, d.OwnerURL, 2)
	if err := postgres.EnsureKeys(ctx, ownerPool, w); err != nil {
		tb.Fatal(err)
	}
	ownerPool.Close()
	pool := MustPool(tb, d.AppURL, 8)
	keys, err := postgres.LoadKeyring(ctx, pool, w)
	if err != nil {
		tb.Fatal(err)
	}
	d.DB = &postgres.DB{Pool: pool, Keys: keys}
	tb.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, adminURL); err == nil {
			c.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
			c.Close(ctx)
		}
	})
	return d
}

// MustPool opens a pool on url, closed when tb ends.
func MustPool(tb testing.TB, url string, maxConns int32) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := postgres.Open(ctx, url, maxConns)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

func mustUser(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return "postgres"
	}
	return p.User.Username()
}

func mustPassword(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return ""
	}
	pw, _ := p.User.Password()
	return pw
}

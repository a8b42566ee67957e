package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Role names. The owner runs migrations and owns every table; the app role is what the
// server connects as: no superuser, no BYPASSRLS, owns nothing. The auth role owns the
// few SECURITY DEFINER lookups and cannot log in.
const (
	OwnerRole = "vitalnexa_owner"
	AppRole   = "vitalnexa_app"
	AuthRole  = "vitalnexa_auth"
)

// Migrate applies every pending migration. ownerURL must connect as OwnerRole.
func Migrate(ctx context.Context, ownerURL string, logger *slog.Logger) error {
	cfg, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		return fmt.Errorf("migrate: %w", redactURLError(err))
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		if logger != nil {
			logger.Info("migration applied", "version", r.Source.Version, "duration_ms", r.Duration.Milliseconds())
		}
	}
	return nil
}

// BootstrapOptions names the database and the passwords of the login roles.
type BootstrapOptions struct {
	Database      string
	OwnerPassword string
	AppPassword   string
}

// Bootstrap creates (or updates) the three roles and the database, owned by OwnerRole.
// It needs a superuser connection (adminURL); production operators may instead create
// the roles themselves with the same attributes. It is idempotent.
func Bootstrap(ctx context.Context, adminURL string, opts BootstrapOptions) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("bootstrap: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Serialise concurrent bootstraps (several test processes share one cluster).
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(7406211)"); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(7406211)")

	roles := []struct{ name, attrs, password string }{
		{OwnerRole, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB", opts.OwnerPassword},
		{AppRole, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB", opts.AppPassword},
		{AuthRole, "NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB", ""},
	}
	for _, r := range roles {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", r.name).Scan(&exists); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		verb := "ALTER"
		if !exists {
			verb = "CREATE"
		}
		stmt := fmt.Sprintf("%s ROLE %s WITH %s", verb, pgx.Identifier{r.name}.Sanitize(), r.attrs)
		if r.password != "" {
			var quoted string
			if err := conn.QueryRow(ctx, "SELECT quote_literal($1::text)", r.password).Scan(&quoted); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
			stmt += " PASSWORD " + quoted
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			// The statement holds a password: report the role, not the statement.
			return fmt.Errorf("bootstrap: %s role %s failed", strings.ToLower(verb), r.name)
		}
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("GRANT %s TO %s", AuthRole, OwnerRole)); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", opts.Database).Scan(&exists); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	db := pgx.Identifier{opts.Database}.Sanitize()
	if !exists {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", db, OwnerRole)); err != nil {
			return fmt.Errorf("bootstrap: create database: %w", err)
		}
		return nil
	}
	// An existing database (DATABASE_URL in dev) is handed to the owner role; in
	// PostgreSQL 15 its public schema follows.
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", db, OwnerRole)); err != nil {
		return fmt.Errorf("bootstrap: alter database owner: %w", err)
	}
	return nil
}

// RoleURL returns url with its user and password replaced (and database, when not "").
func RoleURL(base, user, password, database string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", redactURLError(err)
	}
	u.User = url.UserPassword(user, password)
	if database != "" {
		u.Path = "/" + database
	}
	return u.String(), nil
}

// CheckServerRole refuses a connection that row-level security would not bind: a
// superuser, a role with BYPASSRLS, or one that owns a table. The server must connect as
// AppRole or a role like it.
func CheckServerRole(ctx context.Context, pool *pgxpool.Pool) error {
	var name string
	var super, bypass bool
	var owned int
	err := pool.QueryRow(ctx, `SELECT r.rolname, r.rolsuper, r.rolbypassrls,
			(SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p'))
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&name, &super, &bypass, &owned)
	if err != nil {
		return fmt.Errorf("postgres: check role: %w", err)
	}
	if super || bypass || owned > 0 {
		return fmt.Errorf("postgres: refusing to serve as role %q (superuser=%v, bypassrls=%v, owns %d tables): connect as %s",
			name, super, bypass, owned, AppRole)
	}
	return nil
}

// MigrationsFS is the embedded migrations, for tools that must know what they hold.
func MigrationsFS() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

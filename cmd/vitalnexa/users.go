package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

// runUsers is `vitalnexa users create-admin EMAIL`: it makes the (registered) account with
// this email an admin. The admin must then turn on two-factor authentication before any
// admin endpoint answers. It connects like serve (DATABASE_URL and VITALNEXA_MASTER_KEY);
// without DATABASE_URL it uses the running development instance under VITALNEXA_DATA_DIR.
func runUsers(ctx context.Context, cfg *Config, args []string, logger *slog.Logger, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "create-admin" {
		return fmt.Errorf("usage: vitalnexa users create-admin EMAIL")
	}
	if len(cfg.DatabaseURL) == 0 {
		if err := useDevInstance(cfg); err != nil {
			return err
		}
	}
	if len(cfg.DatabaseURL) == 0 || (cfg.MasterKey == nil && len(cfg.MasterKeyURL) == 0) {
		return fmt.Errorf("set DATABASE_URL and VITALNEXA_MASTER_KEY (or VITALNEXA_MASTER_KEY_URL) as for serve (or start `make run` first)")
	}
	wrapper, err := openMasterWrapper(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeWrapper(wrapper)
	pool, err := postgres.Open(ctx, string(cfg.DatabaseURL), 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := postgres.LoadKeyring(ctx, pool, wrapper)
	if err != nil {
		return err
	}
	db := &postgres.DB{Pool: pool, Keys: keys}
	id, err := db.SetRoleByEmail(ctx, args[1], "admin")
	if phr.ErrorCode(err) == phr.ENOTFOUND {
		return fmt.Errorf("no account has this email: register it first")
	}
	if err != nil {
		return err
	}
	// A grant of privilege is in the trail like every admin action. Should the row fail, the
	// command fails: running it again changes nothing but writes the row.
	if err := cliEvent(ctx, &postgres.AuditStore{Pool: pool}, "admin.granted", id, "vitalnexa users"); err != nil {
		return fmt.Errorf("the admin role was granted but could not be written to the audit trail (run the command again): %w", err)
	}
	logger.Info("admin role granted", "user_id", id)
	fmt.Fprintf(stdout, "User %s is now an admin. Admin endpoints answer once they turn on two-factor authentication (POST /api/me/mfa/totp).\n", id)
	return nil
}

var devEnvURL = regexp.MustCompile(`(?m)^DATABASE_URL=(.+)$`)

// useDevInstance fills the connection and master key from a development instance's files.
func useDevInstance(cfg *Config) error {
	env, err := os.ReadFile(filepath.Join(cfg.DataDir, "dev.env"))
	if err != nil {
		return nil // no development instance here; the caller says what to set
	}
	sec, err := loadDevSecrets(cfg.DataDir)
	if err != nil {
		return err
	}
	if m := devEnvURL.FindSubmatch(env); m != nil {
		// dev.env holds a superuser connection; act as the roles the service uses.
		admin := string(m[1])
		if cfg.DatabaseURL, err = roleURL(admin, postgres.AppRole, sec["PG_APP_PASSWORD"]); err != nil {
			return err
		}
		if len(cfg.MigrateDatabaseURL) == 0 {
			if cfg.MigrateDatabaseURL, err = roleURL(admin, postgres.OwnerRole, sec["PG_OWNER_PASSWORD"]); err != nil {
				return err
			}
		}
	}
	if cfg.MasterKey == nil && len(cfg.MasterKeyURL) == 0 {
		cfg.MasterKey, err = base64Secret(func(string) string { return sec["VITALNEXA_MASTER_KEY"] }, "VITALNEXA_MASTER_KEY", 32, 32)
	}
	return err
}

func roleURL(adminURL, role, password string) (secret, error) {
	u, err := postgres.RoleURL(adminURL, role, password, devDatabase)
	return secret(u), err
}

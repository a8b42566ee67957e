package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vitalnexa/vitalnexa/internal/jobs"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

func runMigrate(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	if len(cfg.MigrateDatabaseURL) == 0 {
		return fmt.Errorf("set VITALNEXA_MIGRATE_DATABASE_URL to a connection as %s", postgres.OwnerRole)
	}
	if cfg.MasterKey == nil && len(cfg.MasterKeyURL) == 0 {
		return fmt.Errorf("set VITALNEXA_MASTER_KEY or VITALNEXA_MASTER_KEY_URL: the first data keys are wrapped by it")
	}
	return migrate(ctx, cfg, logger)
}

// migrate applies the migrations as the owner and creates the first keys.
func migrate(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	// The master key first: a refused one must stop the command before the schema changes.
	wrapper, err := openMasterWrapper(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeWrapper(wrapper)
	if err := postgres.Migrate(ctx, string(cfg.MigrateDatabaseURL), logger); err != nil {
		return err
	}
	owner, err := postgres.Open(ctx, string(cfg.MigrateDatabaseURL), 2)
	if err != nil {
		return err
	}
	defer owner.Close()
	if err := jobs.Migrate(ctx, owner, postgres.AppRole); err != nil {
		return err
	}
	return postgres.EnsureKeys(ctx, owner, wrapper)
}

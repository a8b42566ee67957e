package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

func runMigrate(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	if len(cfg.MigrateDatabaseURL) == 0 {
		return fmt.Errorf("set VITALNEXA_MIGRATE_DATABASE_URL to a connection as %s", postgres.OwnerRole)
	}
	if cfg.MasterKey == nil {
		return fmt.Errorf("set VITALNEXA_MASTER_KEY: the first data keys are wrapped by it")
	}
	return migrate(ctx, cfg, logger)
}

// migrate applies the migrations as the owner and creates the first keys.
func migrate(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	if err := postgres.Migrate(ctx, string(cfg.MigrateDatabaseURL), logger); err != nil {
		return err
	}
	wrapper, err := keyring.NewLocalWrapper(cfg.MasterKey)
	if err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	owner, err := postgres.Open(ctx, string(cfg.MigrateDatabaseURL), 2)
	if err != nil {
		return err
	}
	defer owner.Close()
	return postgres.EnsureKeys(ctx, owner, wrapper)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

const auditUsage = `usage: vitalnexa audit <command>

  verify                    walk the hash chain; exit 0 when intact, else name the first bad row
  export --from T --to T    write the rows of [from, to) as JSON lines (RFC 3339 times)
`

// errAuditBroken makes the command exit non-zero after it has said which row is bad.
var errAuditBroken = errors.New("the audit trail is not intact")

// runAudit reads the trail as the owner (VITALNEXA_MIGRATE_DATABASE_URL; the running
// `make run` instance when unset).
func runAudit(ctx context.Context, cfg *Config, args []string, logger *slog.Logger, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(auditUsage)
	}
	if len(cfg.MigrateDatabaseURL) == 0 {
		if err := useDevInstance(cfg); err != nil {
			return err
		}
	}
	if len(cfg.MigrateDatabaseURL) == 0 {
		return fmt.Errorf("set VITALNEXA_MIGRATE_DATABASE_URL (the owner role reads the whole trail)")
	}
	owner, err := postgres.Open(ctx, string(cfg.MigrateDatabaseURL), 2)
	if err != nil {
		return err
	}
	defer owner.Close()
	switch args[0] {
	case "verify":
		res, err := audit.Verify(ctx, owner)
		if err != nil {
			return err
		}
		if res.OK() {
			fmt.Fprintf(stdout, "intact: %d rows\n", res.Rows)
			return nil
		}
		if res.FirstBad != 0 {
			fmt.Fprintf(stdout, "broken at row %d: %s\n", res.FirstBad, res.Reason)
		} else {
			fmt.Fprintf(stdout, "broken: %s\n", res.Reason)
		}
		return errAuditBroken
	case "export":
		fs := flag.NewFlagSet("export", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		from := fs.String("from", "", "start (RFC 3339), inclusive")
		to := fs.String("to", "", "end (RFC 3339), exclusive")
		if err := fs.Parse(args[1:]); err != nil {
			return errors.New(auditUsage)
		}
		f, err1 := time.Parse(time.RFC3339, *from)
		t, err2 := time.Parse(time.RFC3339, *to)
		if err1 != nil || err2 != nil || !f.Before(t) {
			return fmt.Errorf("--from and --to must be RFC 3339 times, from before to")
		}
		enc := json.NewEncoder(stdout)
		return audit.Export(ctx, owner, f, t, func(r audit.Row) error { return enc.Encode(r) })
	default:
		return errors.New(auditUsage)
	}
}

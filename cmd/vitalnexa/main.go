// Command vitalnexa is the VitalNexa personal health record service: one binary whose
// subcommands serve the API, run a development instance, and migrate the database.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "vitalnexa:", err)
		os.Exit(1)
	}
}

const usage = `usage: vitalnexa <command>

commands:
  serve     serve the API (configuration from VITALNEXA_* variables; see README)
  dev       serve on a private PostgreSQL cluster under $VITALNEXA_DATA_DIR (default var/),
            with development secrets generated on first run (what 'make run' starts)
  migrate   apply database migrations as the owner role and create the first keys
  keys      status | rotate | reencrypt [--wait] | revoke vN | destroy vN | rewrap-master
            manage the data-key versions (see README)
  audit     verify | export --from T --to T
            check the audit trail's hash chain; export a range as JSON lines
  users create-admin EMAIL
            make a registered account an admin (it must then turn on two-factor
            authentication before admin endpoints answer)
`

// run is the whole program; main only supplies the process's environment, so tests can
// call it with their own.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given")
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(stderr)
	switch args[0] {
	case "serve":
		return runServe(ctx, cfg, logger)
	case "dev":
		return runDev(ctx, cfg, logger, stdout)
	case "migrate":
		return runMigrate(ctx, cfg, logger)
	case "users":
		return runUsers(ctx, cfg, args[1:], logger, stdout)
	case "keys":
		return runKeys(ctx, cfg, args[1:], logger, stdout)
	case "audit":
		return runAudit(ctx, cfg, args[1:], logger, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/rivertype"
	"github.com/vitalnexa/vitalnexa/internal/jobs"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

const keysUsage = `usage: vitalnexa keys <command>

  status            one line per data-key version: v{N} {state} {values_remaining}
  rotate            add a key version and make it the one used for writes
  reencrypt [--wait]
                    move every stored value to the newest version (--wait: follow it to the end)
  revoke vN         stop all use of vN but moving its values away, and start that at once
  destroy vN        remove vN's wrapped key for good (refused while values remain under it)
  rewrap-master     wrap the data keys with a new master key, touching no row
`

// keysEnv is what the key commands connect with: the server's role for everything that
// acts as users (re-encryption runs under each user's RLS), the owner for destroy and
// rewrap-master.
type keysEnv struct {
	pool    *pgxpool.Pool
	wrapper keyring.Wrapper
	db      *postgres.DB
	audit   phr.AuditService
	owner   func() (*pgxpool.Pool, error)
	close   func()
}

func openKeysEnv(ctx context.Context, cfg *Config, logger *slog.Logger) (*keysEnv, error) {
	if len(cfg.DatabaseURL) == 0 {
		if err := useDevInstance(cfg); err != nil {
			return nil, err
		}
	}
	if len(cfg.DatabaseURL) == 0 {
		return nil, fmt.Errorf("set DATABASE_URL and the master key as for serve (or start `make run` first)")
	}
	w, err := openMasterWrapper(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	pool, err := postgres.Open(ctx, string(cfg.DatabaseURL), 4)
	if err != nil {
		return nil, err
	}
	keys, err := postgres.LoadKeyring(ctx, pool, w)
	if err != nil {
		pool.Close()
		return nil, err
	}
	e := &keysEnv{pool: pool, wrapper: w, db: &postgres.DB{Pool: pool, Keys: keys}, audit: &postgres.AuditStore{Pool: pool}}
	var owner *pgxpool.Pool
	e.owner = func() (*pgxpool.Pool, error) {
		if owner != nil {
			return owner, nil
		}
		if len(cfg.MigrateDatabaseURL) == 0 {
			return nil, fmt.Errorf("this needs the owner role: set VITALNEXA_MIGRATE_DATABASE_URL")
		}
		owner, err = postgres.Open(ctx, string(cfg.MigrateDatabaseURL), 2)
		return owner, err
	}
	e.close = func() {
		if owner != nil {
			owner.Close()
		}
		pool.Close()
	}
	return e, nil
}

// keyEvent writes a key operation to the audit trail.
func (e *keysEnv) keyEvent(ctx context.Context, name string) error {
	return cliEvent(ctx, e.audit, name, "", "vitalnexa keys")
}

// cliEvent writes an operator's command to the audit trail as event name, about userID
// when it concerns an account, with a request id of its own.
func cliEvent(ctx context.Context, a phr.AuditService, name, userID, agent string) error {
	var id [12]byte
	_, _ = rand.Read(id[:])
	return a.WriteAuditEvent(ctx, &phr.AuditEvent{Timestamp: time.Now().UTC(), Action: "EVENT " + name, UserID: userID,
		RequestID: "cli-" + hex.EncodeToString(id[:]), UserAgent: agent})
}

func runKeys(ctx context.Context, cfg *Config, args []string, logger *slog.Logger, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(keysUsage)
	}
	e, err := openKeysEnv(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer e.close()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "status":
		return keysStatus(ctx, e, stdout)
	case "rotate":
		v, err := postgres.RotateKey(ctx, e.pool, e.wrapper)
		if err != nil {
			return err
		}
		if err := e.keyEvent(ctx, fmt.Sprintf("key.rotated v%d", v)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "v%d is now the write key; older versions still decrypt. Run `vitalnexa keys reencrypt` to move stored values to it.\n", v)
		return nil
	case "reencrypt":
		fs := flag.NewFlagSet("reencrypt", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		wait := fs.Bool("wait", false, "follow the job to the end")
		if err := fs.Parse(rest); err != nil {
			return errors.New(keysUsage)
		}
		return keysReencrypt(ctx, e, *wait, stdout)
	case "revoke":
		v, err := parseKeyVersion(rest)
		if err != nil {
			return err
		}
		if err := postgres.RevokeKey(ctx, e.pool, v); err != nil {
			return err
		}
		if err := e.keyEvent(ctx, fmt.Sprintf("key.revoked v%d", v)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "v%d is revoked; moving its values to the newest version now.\n", v)
		return keysReencrypt(ctx, e, true, stdout)
	case "destroy":
		v, err := parseKeyVersion(rest)
		if err != nil {
			return err
		}
		owner, err := e.owner()
		if err != nil {
			return err
		}
		if err := postgres.DestroyKey(ctx, owner, v); err != nil {
			return err
		}
		if err := e.keyEvent(ctx, fmt.Sprintf("key.destroyed v%d", v)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "v%d is destroyed.\n", v)
		return nil
	case "rewrap-master":
		return keysRewrapMaster(ctx, cfg, e, logger, stdout)
	default:
		return errors.New(keysUsage)
	}
}

func parseKeyVersion(args []string) (int, error) {
	if len(args) != 1 {
		return 0, errors.New(keysUsage)
	}
	v, err := strconv.Atoi(strings.TrimPrefix(args[0], "v"))
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%q is not a key version (like v2)", args[0])
	}
	return v, nil
}

func keysStatus(ctx context.Context, e *keysEnv, stdout io.Writer) error {
	st, err := postgres.KeyStatuses(ctx, e.pool)
	if err != nil {
		return err
	}
	for _, s := range st {
		line := fmt.Sprintf("v%d %s %d", s.Version, s.State, s.Remaining)
		if s.Current {
			line += " (write key)"
		}
		line += fmt.Sprintf(" encryptions=%d", s.Encryptions)
		if s.Encryptions >= postgres.NonceBudgetWarning {
			line += " WARNING: nonce budget running out (2^32 per key); run `vitalnexa keys rotate`"
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// keysReencrypt queues the re-encryption job (serve processes run it). With wait, this
// process runs it too and follows it to the end with a progress bar.
func keysReencrypt(ctx context.Context, e *keysEnv, wait bool, stdout io.Writer) error {
	workers := 0
	if wait {
		workers = 1
	}
	client, err := jobs.NewClient(jobs.Options{DB: e.db, Wrapper: e.wrapper, Audit: e.audit, Workers: workers})
	if err != nil {
		return err
	}
	id, err := jobs.EnqueueReencrypt(ctx, client)
	if err != nil {
		return err
	}
	if err := e.keyEvent(ctx, "key.reencrypt_requested"); err != nil {
		return err
	}
	if !wait {
		fmt.Fprintf(stdout, "Re-encryption queued (job %d); the serve processes run it. `vitalnexa keys status` shows what is left.\n", id)
		return nil
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	defer client.Stop(context.WithoutCancel(ctx))
	total := int64(-1)
	for {
		left, err := postgres.ValuesNotCurrent(ctx, e.pool)
		if err != nil {
			return err
		}
		if total < left {
			total = left
		}
		fmt.Fprint(stdout, "\r"+progressBar(total-left, total))
		job, err := client.JobGet(ctx, id)
		if err != nil {
			return err
		}
		switch job.State {
		case rivertype.JobStateCompleted:
			fmt.Fprintln(stdout)
			return keysStatus(ctx, e, stdout)
		case rivertype.JobStateCancelled, rivertype.JobStateDiscarded:
			fmt.Fprintln(stdout)
			return fmt.Errorf("the re-encryption job ended as %s; see the server log", job.State)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout)
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func progressBar(done, total int64) string {
	const width = 30
	if total <= 0 {
		total = 1
	}
	if done > total {
		done = total
	}
	n := int(done * width / total)
	return fmt.Sprintf("[%s%s] %3d%% %d/%d values", strings.Repeat("=", n), strings.Repeat(" ", width-n), done*100/total, done, total)
}

// keysRewrapMaster wraps every data key with the new master key (VITALNEXA_NEW_MASTER_KEY
// or VITALNEXA_NEW_MASTER_KEY_URL) in one transaction, touching no row of user data.
func keysRewrapMaster(ctx context.Context, cfg *Config, e *keysEnv, logger *slog.Logger, stdout io.Writer) error {
	to, err := openNewMasterWrapper(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeWrapper(to)
	owner, err := e.owner()
	if err != nil {
		return err
	}
	n, err := postgres.RewrapKeys(ctx, owner, e.wrapper, to)
	if err != nil {
		return err
	}
	if err := e.keyEvent(ctx, "key.master_rewrapped"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d keys are now wrapped by the new master key. Configure every server with it and restart them.\n", n)
	return nil
}

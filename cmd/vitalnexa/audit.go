package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// copies of the audit trail
	"gocloud.dev/gcerrors"
)

const auditUsage = `usage: vitalnexa audit <command>

  verify                    walk the hash chain, then check the copy off the database (when
                            VITALNEXA_AUDIT_COPY_URL is set or the default copy exists); exit 0
                            when both are intact, else name the first bad row and what is wrong
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
		switch {
		case res.OK():
			fmt.Fprintf(stdout, "intact: %d rows\n", res.Rows)
		case res.FirstBad != 0:
			fmt.Fprintf(stdout, "broken at row %d: %s\n", res.FirstBad, res.Reason)
		default:
			fmt.Fprintf(stdout, "broken: %s\n", res.Reason)
		}
		copyOK, err := verifyAuditCopy(ctx, cfg, owner, logger, stdout)
		if err != nil {
			return err
		}
		if !res.OK() || !copyOK {
			return errAuditBroken
		}
		return nil
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

// openAuditCopy opens the blob store the trail is copied to; nil when the copy is off, or,
// unless create, when it is the default directory and that does not exist. The default
// directory is created (0700) when create is set.
func openAuditCopy(ctx context.Context, cfg *Config, create bool) (*blob.Bucket, error) {
	if cfg.AuditCopyURL == "" {
		return nil, nil
	}
	u := cfg.AuditCopyURL
	if dir := cfg.auditCopyDir(); dir != "" {
		if create {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("audit copy: %w", err)
			}
		} else if _, err := os.Stat(dir); err != nil {
			return nil, nil
		}
		// The default copy keeps no extended attributes next to the segments.
		u += "?metadata=skip"
	}
	b, err := blob.OpenBucket(ctx, u)
	if err != nil {
		// The URL can carry credentials: name only its scheme.
		scheme, _, _ := strings.Cut(u, ":")
		return nil, fmt.Errorf("VITALNEXA_AUDIT_COPY_URL: cannot open the %s:// blob store (supported: file://): %s", scheme, gcerrors.Code(err))
	}
	return b, nil
}

// verifyAuditCopy checks the copy when there is one, reporting on stdout; false when it is
// not intact or does not agree with the table.
func verifyAuditCopy(ctx context.Context, cfg *Config, owner *pgxpool.Pool, logger *slog.Logger, stdout io.Writer) (bool, error) {
	bucket, err := openAuditCopy(ctx, cfg, false)
	if err != nil || bucket == nil {
		return true, err
	}
	defer bucket.Close()
	// The segments are signed with a key derived from the blind-index key: the master key
	// unwraps it.
	wrapper, err := openMasterWrapper(ctx, cfg, logger)
	if err != nil {
		return false, fmt.Errorf("checking the audit copy's signatures needs the master key: %w", err)
	}
	defer closeWrapper(wrapper)
	keys, err := postgres.LoadKeyring(ctx, owner, wrapper)
	if err != nil {
		return false, err
	}
	rep, err := audit.VerifyCopy(ctx, owner, bucket, audit.SegmentKey(keys))
	if err != nil {
		return false, err
	}
	if rep.OK() {
		fmt.Fprintf(stdout, "copy intact: %d segments, %d rows, each equal to its row in the table\n", rep.Segments, rep.Rows)
		return true, nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(stdout, "copy: %s\n", p)
	}
	return false, nil
}

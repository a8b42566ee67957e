// Package jobs runs VitalNexa's background work on River, a job queue kept in PostgreSQL,
// so that any number of serve processes share it and a job survives the process that
// started it: moving stored values to the newest key version, and rotating the data key
// on a schedule.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
	"gocloud.dev/blob"
)

// Migrate creates or updates River's tables (as the owner) and lets the server role use
// them. River's tables hold job arguments, never PHI.
func Migrate(ctx context.Context, owner *pgxpool.Pool, appRole string) error {
	m, err := rivermigrate.New(riverpgxv5.New(owner), nil)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("jobs: migrate: %w", err)
	}
	// Only River's own tables and sequences: the grants of every other table stay as the
	// migrations set them.
	rows, err := owner.Query(ctx, `SELECT c.relname, c.relkind = 'S' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relname LIKE 'river\_%' AND c.relkind IN ('r', 'p', 'S')`)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	type rel struct {
		name string
		seq  bool
	}
	rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rel, error) {
		var x rel
		return x, r.Scan(&x.name, &x.seq)
	})
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	role := pgx.Identifier{appRole}.Sanitize()
	for _, r := range rels {
		q := `GRANT SELECT, INSERT, UPDATE, DELETE ON ` + pgx.Identifier{r.name}.Sanitize() + ` TO ` + role
		switch {
		case r.seq:
			q = `GRANT USAGE, SELECT ON SEQUENCE ` + pgx.Identifier{r.name}.Sanitize() + ` TO ` + role
		case r.name == "river_migration":
			q = `GRANT SELECT ON river_migration TO ` + role
		}
		if _, err := owner.Exec(ctx, q); err != nil {
			return fmt.Errorf("jobs: grant: %w", err)
		}
	}
	return nil
}

// ReencryptArgs asks for every stored value to be moved to the newest key version. At most
// one such job waits or runs at a time.
type ReencryptArgs struct{}

func (ReencryptArgs) Kind() string { return "reencrypt" }

func (ReencryptArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 100, UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

// RotateArgs asks for a rotation of the data key if the write key is older than the
// rotation interval.
type RotateArgs struct{}

func (RotateArgs) Kind() string { return "rotate_key" }

// Options are what the workers need.
type Options struct {
	DB      *postgres.DB
	Wrapper keyring.Wrapper
	Audit   phr.AuditService
	Logger  *slog.Logger
	// RotateEvery is the age of the write key at which the scheduled rotation replaces it;
	// 0 turns scheduled rotation off.
	RotateEvery time.Duration
	// Workers is how many jobs this process runs at once; 0 inserts jobs but runs none.
	Workers int

	// Rules, when set, are evaluated over the audit trail every minute; new alerts are
	// logged and posted to AlertWebhookURL when that is set.
	Rules           *audit.Rules
	AlertWebhookURL string
	// AuditRetentionYears, when set (at least 6), has a daily job keep a year of partitions
	// ahead and drop the months older than this many years.
	AuditRetentionYears int
	// CopyBucket and CopyKey, when set, have a daily job copy the new audit rows off the
	// database as segments signed with CopyKey (audit.SegmentKey).
	CopyBucket *blob.Bucket
	CopyKey    []byte
}

// NewClient returns a River client that runs the workers (when opts.Workers > 0). Start it
// with Start and stop it with Stop.
func NewClient(opts Options) (*river.Client[pgx.Tx], error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := &river.Config{Logger: opts.Logger}
	if opts.Workers > 0 {
		workers := river.NewWorkers()
		river.AddWorker(workers, &reencryptWorker{opts: opts})
		river.AddWorker(workers, &rotateWorker{opts: opts})
		river.AddWorker(workers, &auditRulesWorker{opts: opts})
		river.AddWorker(workers, &auditRetentionWorker{opts: opts})
		river.AddWorker(workers, &auditCopyWorker{opts: opts})
		cfg.Workers = workers
		cfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.Workers}}
		// A job of a killed process is picked up again after this long.
		cfg.RescueStuckJobsAfter = 2 * time.Minute
		periodic := func(every time.Duration, args river.JobArgs) {
			cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(every),
				func() (river.JobArgs, *river.InsertOpts) { return args, nil }, &river.PeriodicJobOpts{RunOnStart: true}))
		}
		if opts.RotateEvery > 0 {
			periodic(6*time.Hour, RotateArgs{})
		}
		if opts.Rules != nil {
			periodic(time.Minute, AuditRulesArgs{})
		}
		if opts.AuditRetentionYears > 0 {
			periodic(24*time.Hour, AuditRetentionArgs{})
		}
		if opts.CopyBucket != nil && len(opts.CopyKey) > 0 {
			periodic(24*time.Hour, AuditCopyArgs{})
		}
	}
	return river.NewClient(riverpgxv5.New(opts.DB.Pool), cfg)
}

type reencryptWorker struct {
	river.WorkerDefaults[ReencryptArgs]
	opts Options
}

// Timeout: the job runs as long as it needs; it is resumable, so a cut only delays it.
func (w *reencryptWorker) Timeout(*river.Job[ReencryptArgs]) time.Duration { return -1 }

func (w *reencryptWorker) Work(ctx context.Context, job *river.Job[ReencryptArgs]) error {
	if err := postgres.ReloadKeyring(ctx, w.opts.DB.Pool, w.opts.Wrapper, w.opts.DB.Keys); err != nil {
		return err
	}
	p, err := w.opts.DB.ReencryptAll(ctx, 500, nil)
	w.event(ctx, fmt.Sprintf("job.reencrypt moved=%d users=%d", p.Values, p.Users))
	if err != nil {
		return err
	}
	// Another process that has not yet seen the rotation may have written under an older
	// version meanwhile: come back until nothing is left.
	left, err := postgres.ValuesNotCurrent(ctx, w.opts.DB.Pool)
	if err != nil {
		return err
	}
	if left > 0 {
		return river.JobSnooze(5 * time.Second)
	}
	return nil
}

func (w *reencryptWorker) event(ctx context.Context, name string) {
	if w.opts.Audit == nil {
		return
	}
	ev := &phr.AuditEvent{Timestamp: time.Now().UTC(), Action: "EVENT " + name, RequestID: "job-reencrypt", UserAgent: "vitalnexa jobs"}
	if err := w.opts.Audit.WriteAuditEvent(context.WithoutCancel(ctx), ev); err != nil {
		w.opts.Logger.Error("audit of a job run failed", "job", "reencrypt", "err", err.Error())
	}
}

type rotateWorker struct {
	river.WorkerDefaults[RotateArgs]
	opts Options
}

func (w *rotateWorker) Work(ctx context.Context, job *river.Job[RotateArgs]) error {
	if w.opts.RotateEvery <= 0 {
		return nil
	}
	st, err := postgres.KeyStatuses(ctx, w.opts.DB.Pool)
	if err != nil {
		return err
	}
	for _, s := range st {
		if s.Current && time.Since(s.CreatedAt) < w.opts.RotateEvery {
			return nil
		}
	}
	v, err := postgres.RotateKey(ctx, w.opts.DB.Pool, w.opts.Wrapper)
	if err != nil {
		return err
	}
	w.opts.Logger.Info("data key rotated on schedule", "job", "rotate_key", "version", v)
	if w.opts.Audit != nil {
		_ = w.opts.Audit.WriteAuditEvent(ctx, &phr.AuditEvent{Timestamp: time.Now().UTC(),
			Action: fmt.Sprintf("EVENT key.rotated v%d", v), RequestID: "job-rotate", UserAgent: "vitalnexa jobs"})
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	if client == nil {
		return errors.New("jobs: no client in the job's context")
	}
	_, err = client.Insert(ctx, ReencryptArgs{}, nil)
	return err
}

// EnqueueReencrypt inserts the re-encryption job (or finds the one already waiting) and
// returns its id.
func EnqueueReencrypt(ctx context.Context, client *river.Client[pgx.Tx]) (int64, error) {
	res, err := client.Insert(ctx, ReencryptArgs{}, nil)
	if err != nil {
		return 0, fmt.Errorf("jobs: %w", err)
	}
	return res.Job.ID, nil
}

// auditEvent writes a job's own run to the audit trail; a failure is logged.
func auditEvent(ctx context.Context, opts Options, job, action string) {
	if opts.Audit == nil {
		return
	}
	ev := &phr.AuditEvent{Timestamp: time.Now().UTC(), Action: "EVENT " + action, RequestID: "job-" + job, UserAgent: "vitalnexa jobs"}
	if err := opts.Audit.WriteAuditEvent(context.WithoutCancel(ctx), ev); err != nil {
		opts.Logger.Error("audit of a job run failed", "job", job, "err", err.Error())
	}
}

// AuditRulesArgs asks for the audit rules to be evaluated over the last window.
type AuditRulesArgs struct{}

func (AuditRulesArgs) Kind() string { return "audit_rules" }

type auditRulesWorker struct {
	river.WorkerDefaults[AuditRulesArgs]
	opts Options
}

func (w *auditRulesWorker) Work(ctx context.Context, job *river.Job[AuditRulesArgs]) error {
	if w.opts.Rules == nil {
		return nil
	}
	alerts, err := RunAuditRules(ctx, w.opts, time.Now())
	if err != nil {
		return err
	}
	if len(alerts) > 0 {
		// Only runs that raised alerts are audited, or the trail would gain a row a minute.
		auditEvent(ctx, w.opts, "audit_rules", fmt.Sprintf("job.audit_rules alerts=%d", len(alerts)))
	}
	return nil
}

// RunAuditRules evaluates opts.Rules over the window before now (and the current one) and
// notifies of the new alerts.
func RunAuditRules(ctx context.Context, opts Options, now time.Time) ([]audit.Alert, error) {
	alerts, err := audit.EvaluateRules(ctx, opts.DB.Pool, now.Add(-opts.Rules.Window), *opts.Rules)
	if err != nil {
		return nil, err
	}
	n := &audit.Notifier{Logger: opts.Logger, URL: opts.AlertWebhookURL}
	n.Notify(ctx, alerts)
	return alerts, nil
}

// AuditRetentionArgs asks for the audit partitions to be kept ahead and the expired ones
// dropped.
type AuditRetentionArgs struct{}

func (AuditRetentionArgs) Kind() string { return "audit_retention" }

type auditRetentionWorker struct {
	river.WorkerDefaults[AuditRetentionArgs]
	opts Options
}

func (w *auditRetentionWorker) Work(ctx context.Context, job *river.Job[AuditRetentionArgs]) error {
	if w.opts.AuditRetentionYears <= 0 {
		return nil
	}
	dropped, err := EnforceAuditRetention(ctx, w.opts.DB.Pool, w.opts.AuditRetentionYears)
	if err != nil {
		return err
	}
	if len(dropped) > 0 {
		w.opts.Logger.Info("expired audit partitions dropped", "job", "audit_retention", "partitions", dropped)
	}
	auditEvent(ctx, w.opts, "audit_retention", fmt.Sprintf("job.audit_retention dropped=%d", len(dropped)))
	return nil
}

// MinAuditRetentionYears is the shortest retention there is (HIPAA: six years); the
// database refuses less as well.
const MinAuditRetentionYears = 6

// EnforceAuditRetention makes sure the audit partitions of the next twelve months exist
// and drops the months older than years, returning the dropped partitions' names. Fewer
// than six years are refused.
func EnforceAuditRetention(ctx context.Context, pool *pgxpool.Pool, years int) ([]string, error) {
	if years < MinAuditRetentionYears {
		return nil, fmt.Errorf("jobs: audit retention of %d years is shorter than six", years)
	}
	if _, err := pool.Exec(ctx, `SELECT audit_ensure_partitions(now(), 12)`); err != nil {
		return nil, fmt.Errorf("jobs: audit partitions: %w", err)
	}
	rows, err := pool.Query(ctx, `SELECT audit_drop_expired(make_interval(years => $1))`, years)
	if err != nil {
		return nil, fmt.Errorf("jobs: audit retention: %w", err)
	}
	dropped, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("jobs: audit retention: %w", err)
	}
	return dropped, nil
}

// AuditCopyArgs asks for the new audit rows to be copied off the database.
type AuditCopyArgs struct{}

func (AuditCopyArgs) Kind() string { return "audit_copy" }

type auditCopyWorker struct {
	river.WorkerDefaults[AuditCopyArgs]
	opts Options
}

// Timeout: a first copy of a long trail takes as long as it takes; it resumes where it stopped.
func (w *auditCopyWorker) Timeout(*river.Job[AuditCopyArgs]) time.Duration { return -1 }

func (w *auditCopyWorker) Work(ctx context.Context, job *river.Job[AuditCopyArgs]) error {
	if w.opts.CopyBucket == nil || len(w.opts.CopyKey) == 0 {
		return nil
	}
	res, err := audit.Copy(ctx, w.opts.DB.Pool, w.opts.CopyBucket, w.opts.CopyKey, 0)
	if err != nil && ctx.Err() != nil {
		// Shut down mid-copy: what was copied stays copied and the next run resumes.
		w.opts.Logger.Info("audit copy interrupted; the next run resumes it", "job", "audit_copy")
		return err
	}
	if err != nil {
		w.opts.Logger.Error("audit copy failed", "job", "audit_copy", "err", err.Error())
		auditEvent(ctx, w.opts, "audit_copy", "job.audit_copy failed")
		return err
	}
	if res.Rows > 0 {
		auditEvent(ctx, w.opts, "audit_copy", fmt.Sprintf("job.audit_copy rows=%d segments=%d last_seq=%d", res.Rows, res.Segments, res.LastSeq))
	}
	return nil
}

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
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
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
		cfg.Workers = workers
		cfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: opts.Workers}}
		// A job of a killed process is picked up again after this long.
		cfg.RescueStuckJobsAfter = 2 * time.Minute
		if opts.RotateEvery > 0 {
			cfg.PeriodicJobs = []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(6*time.Hour),
				func() (river.JobArgs, *river.InsertOpts) { return RotateArgs{}, nil }, &river.PeriodicJobOpts{RunOnStart: true})}
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

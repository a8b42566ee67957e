package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/vitalnexa/vitalnexa/internal/jobs"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestScheduledRotationRotatesAnOldKeyAndMovesTheValues(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	w, err := keyring.NewLocalWrapper(d.MasterKey)
	if err != nil {
		t.Fatal(err)
	}
	u := &phr.User{Email: "ana@example.com", FullName: "Ana", DateOfBirth: "1980-01-01"}
	if err := d.DB.CreateUser(ctx, u, "$vnp1$x", false); err != nil {
		t.Fatal(err)
	}
	owner := pgtest.MustPool(t, d.OwnerURL, 1)
	// The write key is 100 days old.
	if _, err := owner.Exec(ctx, `UPDATE encryption_keys SET created_at = now() - interval '100 days' WHERE purpose = 'data'`); err != nil {
		t.Fatal(err)
	}
	client, err := jobs.NewClient(jobs.Options{DB: d.DB, Wrapper: w, Audit: &postgres.AuditStore{Pool: d.DB.Pool},
		RotateEvery: 90 * 24 * time.Hour, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer client.Stop(ctx)
	// The periodic job runs on start; wait until the values are under the new key.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := postgres.KeyStatuses(ctx, d.DB.Pool)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) == 2 && st[1].Current && st[0].Remaining == 0 && st[1].Remaining > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled rotation and re-encryption: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A young key is left alone.
	res, err := client.Insert(ctx, jobs.RotateArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, err := client.JobGet(ctx, res.Job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == rivertype.JobStateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotation job state %s", j.State)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, _ := postgres.KeyStatuses(ctx, d.DB.Pool)
	if len(st) != 2 {
		t.Fatalf("a young key was rotated again: %+v", st)
	}
	var events int
	owner.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action LIKE 'EVENT key.rotated%' OR action LIKE 'EVENT job.reencrypt%'`).Scan(&events)
	if events < 2 {
		t.Fatalf("%d audit rows for the rotation and the job run, want both", events)
	}
}

package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

func mustWrapper(t *testing.T, d *pgtest.Database) keyring.Wrapper {
	t.Helper()
	w, err := keyring.NewLocalWrapper(d.MasterKey)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func remaining(t *testing.T, d *pgtest.Database) map[int]int64 {
	t.Helper()
	st, err := postgres.KeyStatuses(context.Background(), d.DB.Pool)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, s := range st {
		out[s.Version] = s.Remaining
	}
	return out
}

func TestRotateReencryptRevokeDestroy(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	w := mustWrapper(t, d)
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	for _, u := range []context.Context{alice, bob} {
		if _, err := d.DB.Import(u, sampleBatch("x", 30)); err != nil {
			t.Fatal(err)
		}
	}
	before := remaining(t, d)
	if before[1] == 0 {
		t.Fatal("no values under v1 after the import")
	}
	v, err := postgres.RotateKey(ctx, d.DB.Pool, w)
	if err != nil || v != 2 {
		t.Fatalf("rotate: v%d %v", v, err)
	}
	// Attack: revoke the write key, leaving nothing to write with.
	if err := postgres.RevokeKey(ctx, d.DB.Pool, 2); err == nil {
		t.Fatal("the write key was revoked")
	}
	if err := postgres.ReloadKeyring(ctx, d.DB.Pool, w, d.DB.Keys); err != nil {
		t.Fatal(err)
	}
	if got := d.DB.Keys.CurrentVersion(); got != 2 {
		t.Fatalf("after reload the write version is v%d", got)
	}
	if err := postgres.RevokeKey(ctx, d.DB.Pool, 1); err != nil {
		t.Fatal(err)
	}
	owner := pgtest.MustPool(t, d.OwnerURL, 2)
	// v1 still holds values: it cannot be destroyed yet.
	if err := postgres.DestroyKey(ctx, owner, 1); err == nil {
		t.Fatal("a key with values under it was destroyed")
	}
	// Reads of values under the revoked version still work until the job has moved them,
	// and each such read asks for the job to run now.
	if err := postgres.ReloadKeyring(ctx, d.DB.Pool, w, d.DB.Keys); err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	d.DB.OnRevokedRead = func() { asked.Add(1) }
	if _, err := d.DB.FindUserByID(alice, phr.UserIDFromContext(alice)); err != nil {
		t.Fatalf("read under a revoked version: %v", err)
	}
	if asked.Load() == 0 {
		t.Fatal("a read under a revoked version did not ask for re-encryption")
	}
	p, err := d.DB.ReencryptAll(ctx, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	after := remaining(t, d)
	if after[1] != 0 || after[2] != before[1] || int64(p.Values) != before[1] || p.Users != 2 {
		t.Fatalf("after re-encryption: %v (moved %+v), before %v", after, p, before)
	}
	// Idempotent: a second run moves nothing.
	if p, err := d.DB.ReencryptAll(ctx, 7, nil); err != nil || p.Values != 0 {
		t.Fatalf("second run: %+v %v", p, err)
	}
	if err := postgres.DestroyKey(ctx, owner, 1); err != nil {
		t.Fatal(err)
	}
	if err := postgres.ReloadKeyring(ctx, d.DB.Pool, w, d.DB.Keys); err != nil {
		t.Fatal(err)
	}
	// Everything still reads, now without v1.
	asked.Store(0)
	u, err := d.DB.FindUserByID(alice, phr.UserIDFromContext(alice))
	if asked.Load() != 0 {
		t.Fatal("a read under the current version asked for re-encryption")
	}
	if err != nil || u.Email != "alice@example.com" {
		t.Fatalf("alice after v1 was destroyed: %+v %v", u, err)
	}
	res, _, err := d.DB.FindTestResults(bob, phr.TestResultFilter{Limit: 100})
	if err != nil || len(res) != 30 || res[0].Name != "Glucose" {
		t.Fatalf("bob's results after destruction: %d %v", len(res), err)
	}
}

func TestReencryptionRacingWritesLosesNothing(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	w := mustWrapper(t, d)
	alice := MustUser(t, d.DB, "alice@example.com")
	for _, u := range []context.Context{alice, MustUser(t, d.DB, "b@example.com"), MustUser(t, d.DB, "c@example.com"), MustUser(t, d.DB, "d@example.com")} {
		if _, err := d.DB.Import(u, sampleBatch("x", 50)); err != nil {
			t.Fatal(err)
		}
	}
	recs, _, _ := d.DB.FindHealthRecords(alice, phr.HealthRecordFilter{Limit: 10})
	id := recs[0].ID
	if _, err := postgres.RotateKey(ctx, d.DB.Pool, w); err != nil {
		t.Fatal(err)
	}
	if err := postgres.ReloadKeyring(ctx, d.DB.Pool, w, d.DB.Keys); err != nil {
		t.Fatal(err)
	}
	var last atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			title := "title " + time.Now().Format(time.RFC3339Nano)
			if _, err := d.DB.UpdateHealthRecord(alice, id, phr.HealthRecordUpdate{Title: &title}); err != nil {
				if phr.ErrorCode(err) == phr.EUNAVAILABLE {
					continue // a connection the killed job was opening; the user retries
				}
				t.Error(err)
				return
			}
			last.Store(title)
		}
	}()
	// Kill the job halfway (its context ends after the second of four users), then resume.
	total := remaining(t, d)[1]
	jctx, cancel := context.WithCancel(ctx)
	d.DB.ReencryptAll(jctx, 3, func(p postgres.ReencryptProgress) {
		if p.Users == 2 {
			cancel()
		}
	})
	cancel()
	if mid := remaining(t, d)[1]; mid == 0 || mid >= total {
		t.Fatalf("after the kill %d of %d values are left under v1; want the job stopped halfway", mid, total)
	}
	if _, err := d.DB.ReencryptAll(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if n := remaining(t, d)[1]; n != 0 {
		t.Fatalf("%d values still under v1", n)
	}
	got, err := d.DB.FindHealthRecordByID(alice, id)
	if err != nil || got.Title != last.Load().(string) {
		t.Fatalf("record title %q, the user last wrote %q (%v)", got.Title, last.Load(), err)
	}
}

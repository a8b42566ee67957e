package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// mustTrail writes n rows through a Writer from n concurrent requests.
func mustTrail(t *testing.T, n int) (*pgtest.Database, *pgxpool.Pool) {
	t.Helper()
	d := pgtest.MustDatabase(t)
	w := audit.NewWriter(d.DB.Pool, nil)
	defer w.Close()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.WriteAuditEvent(context.Background(), &phr.AuditEvent{Timestamp: time.Now(), Action: "GET /api/test-results",
				StatusCode: 200, RequestID: fmt.Sprintf("r%d", i), IPAddress: "192.0.2.1", UserAgent: "test"})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return d, pgtest.MustPool(t, d.OwnerURL, 2)
}

func TestConcurrentWritersMakeOneIntactChain(t *testing.T) {
	t.Parallel()
	_, owner := mustTrail(t, 200)
	res, err := audit.Verify(context.Background(), owner)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Rows != 200 {
		t.Fatalf("verify = %+v, want 200 intact rows", res)
	}
	var txs int
	// Group commit: the 200 rows did not take 200 transactions.
	owner.QueryRow(context.Background(), `SELECT count(DISTINCT xmin::text) FROM audit_log`).Scan(&txs)
	if txs >= 200 {
		t.Fatalf("%d transactions for 200 concurrent rows: no group commit", txs)
	}
}

func TestVerifyNamesTheFirstTamperedRow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		tamper string // run as a superuser with triggers off
		bad    int64  // seq of the row Verify must name; 0 for a cut tail
	}{
		// Attack: edit a row to hide who did what.
		{"edited", `UPDATE audit_log SET action = 'GET /healthz' WHERE seq = 3`, 3},
		// Attack: delete a row, and another user's access disappears.
		{"deleted", `DELETE FROM audit_log WHERE seq = 5`, 6},
		// Attack: swap two rows' places in the order.
		{"reordered", `UPDATE audit_log SET seq = CASE seq WHEN 7 THEN 8 ELSE 7 END WHERE seq IN (7, 8)`, 7},
		// Attack: edit a row and recompute its own hash (the next row still names the old one).
		{"edited and rehashed", `UPDATE audit_log SET action = 'x' WHERE seq = 4;
			UPDATE audit_log a SET hash = sha256(a.prev_hash || convert_to(audit_row_content(a), 'UTF8')) WHERE seq = 4`, 5},
		// Attack: cut the newest rows off the end.
		{"cut at the end", `DELETE FROM audit_log WHERE seq >= 9`, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, owner := mustTrail(t, 10)
			ctx := context.Background()
			admin := pgtest.MustPool(t, d.AdminURL, 1)
			conn, err := admin.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
				t.Fatal(err)
			}
			var wantID int64
			if tc.bad > 0 {
				owner.QueryRow(ctx, `SELECT id FROM audit_log WHERE seq = $1`, tc.bad).Scan(&wantID)
			}
			if _, err := conn.Exec(ctx, tc.tamper); err != nil {
				t.Fatal(err)
			}
			if tc.name == "reordered" {
				owner.QueryRow(ctx, `SELECT id FROM audit_log WHERE seq = 7`).Scan(&wantID)
			}
			res, err := audit.Verify(ctx, owner)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK() || res.FirstBad != wantID {
				t.Fatalf("verify = %+v, want row %d named", res, wantID)
			}
		})
	}
}

func TestVerifyAfterRetentionDroppedTheOldestMonths(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	owner := pgtest.MustPool(t, d.OwnerURL, 2)
	old := time.Now().AddDate(-7, 0, 0)
	if _, err := owner.Exec(ctx, `SELECT audit_ensure_partitions($1, 1)`, old); err != nil {
		t.Fatal(err)
	}
	w := audit.NewWriter(d.DB.Pool, nil)
	defer w.Close()
	for i, ts := range []time.Time{old, old.Add(time.Hour), time.Now(), time.Now()} {
		if err := w.WriteAuditEvent(ctx, &phr.AuditEvent{Timestamp: ts, Action: "GET /healthz", StatusCode: 200, RequestID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var dropped int
	if err := d.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_drop_expired(interval '6 years')`).Scan(&dropped); err != nil || dropped == 0 {
		t.Fatalf("retention dropped %d partitions (%v)", dropped, err)
	}
	res, err := audit.Verify(ctx, owner)
	if err != nil || !res.OK() || res.Rows != 2 {
		t.Fatalf("verify after retention = %+v %v, want the 2 kept rows intact", res, err)
	}
}

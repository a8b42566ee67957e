package postgres_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

const (
	reencryptBenchRows        = 100_000 // test results of the one user
	reencryptBenchImportBatch = 10_000  // test results per d.DB.Import (one transaction)
	reencryptBenchImporters   = 2       // concurrent imports during the setup (one per core here)
	reencryptBenchJobBatch    = 500     // rows per transaction, as the re-encryption job (internal/jobs) runs
	// The per-value UPDATE baseline costs about as much as the job itself, so it runs on the
	// first tenth of the rows (in id order): it gives the cost of one statement, not a total.
	reencryptBenchValueRows = 10_000
)

// reencryptBenchColumns are the ciphertext columns of test_results, in table order.
var reencryptBenchColumns = []string{"code", "name", "value", "unit", "reference_range", "notes"}

// BenchmarkReencrypt measures, in one run, the re-encryption job (ReencryptAll after a key
// rotation) on one user with reencryptBenchRows test results, next to three baselines taken on
// the same rows just before it:
//
//   - aes: keyring.Reencrypt (decrypt under v1, encrypt under v2) of every stored test-result
//     value, in memory, on one goroutine, as the job calls it;
//   - update_row: one `UPDATE test_results SET notes = notes WHERE id = $1` per row, under the
//     user's RLS, reencryptBenchJobBatch rows per transaction: every row written once;
//   - update_value: the job's own compare-and-swap statement, `UPDATE test_results SET c = $1
//     WHERE id = $2 AND c = $3`, once per value with the value it already holds, batched the
//     same way: the job's writes without its reads and its cryptography. Only on the first
//     reencryptBenchValueRows rows, to keep the run short; it is a rate per statement.
//
// Every write phase starts from a table rewritten by VACUUM FULL, so each sees the packed
// layout an import leaves. The scenario runs once whatever b.N is; ns/op is suppressed and
// B/op, allocs/op (with -benchmem) cover the whole scenario including the setup.
func BenchmarkReencrypt(b *testing.B) {
	ctx := context.Background()
	d := pgtest.MustDatabase(b)
	w, err := keyring.NewLocalWrapper(d.MasterKey)
	if err != nil {
		b.Fatal(err)
	}
	admin := pgtest.MustPool(b, d.AdminURL, 1)
	user := mustBenchUser(b, d.DB, "reencrypt-bench@example.com")
	userID := phr.UserIDFromContext(user)

	// Setup: not measured.
	t0 := time.Now()
	next := make(chan int)
	go func() {
		for i := 0; i < reencryptBenchRows; i += reencryptBenchImportBatch {
			next <- i
		}
		close(next)
	}()
	var wg sync.WaitGroup
	importErrs := make(chan error, reencryptBenchImporters)
	for range reencryptBenchImporters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res, err := d.DB.Import(user, reencryptBenchBatch(i, reencryptBenchImportBatch))
				if err == nil && res.TestResultsCreated != reencryptBenchImportBatch {
					err = fmt.Errorf("import created %d test results, want %d", res.TestResultsCreated, reencryptBenchImportBatch)
				}
				if err != nil {
					importErrs <- err
					for range next {
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(importErrs)
	if err := <-importErrs; err != nil {
		b.Fatal(err)
	}
	importTook := time.Since(t0)
	before := benchRemaining(b, d.DB.Pool)
	total := before[1]
	stored := readBenchRows(b, d.DB.Pool, userID)
	userValues := total - int64(len(stored)*len(reencryptBenchColumns)) // the users row's
	if len(stored) != reencryptBenchRows || userValues < 1 {
		b.Fatalf("stored %d rows, %d values under v1; want %d rows, 6 values each, and the user's", len(stored), total, reencryptBenchRows)
	}
	if v, err := postgres.RotateKey(ctx, d.DB.Pool, w); err != nil || v != 2 {
		b.Fatalf("rotate: v%d %v", v, err)
	}
	if err := postgres.ReloadKeyring(ctx, d.DB.Pool, w, d.DB.Keys); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()

	// Baseline 1: the cryptography alone.
	t0 = time.Now()
	aesValues := 0
	for _, r := range stored {
		for i, c := range reencryptBenchColumns {
			if _, changed, err := d.DB.Keys.Reencrypt(r.values[i], keyring.Field{Table: "test_results", Column: c, RowID: r.id}); err != nil || !changed {
				b.Fatalf("re-encrypt in memory: changed %v, %v", changed, err)
			}
			aesValues++
		}
	}
	aesTook := time.Since(t0)

	// Baseline 2: every row written once.
	vacuumFullBench(b, admin)
	t0 = time.Now()
	updatedRows := benchUpdateInBatches(b, d.DB.Pool, userID, stored, func(tx pgx.Tx, r benchRow) (int64, error) {
		tag, err := tx.Exec(ctx, `UPDATE test_results SET notes = notes WHERE id = $1`, r.id)
		return tag.RowsAffected(), err
	})
	rowTook := time.Since(t0)
	if updatedRows != reencryptBenchRows {
		b.Fatalf("the UPDATE baseline wrote %d rows, want %d", updatedRows, reencryptBenchRows)
	}

	// Baseline 3: the job's statements, with the values the rows already hold.
	vacuumFullBench(b, admin)
	t0 = time.Now()
	updatedValues := benchUpdateInBatches(b, d.DB.Pool, userID, stored[:reencryptBenchValueRows], func(tx pgx.Tx, r benchRow) (int64, error) {
		var n int64
		for i, c := range reencryptBenchColumns {
			tag, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE test_results SET %s = $1 WHERE id = $2 AND %s = $3`, c, c),
				r.values[i], r.id, r.values[i])
			if err != nil {
				return n, err
			}
			n += tag.RowsAffected()
		}
		return n, nil
	})
	valueTook := time.Since(t0)
	if updatedValues != reencryptBenchValueRows*int64(len(reencryptBenchColumns)) {
		b.Fatalf("the per-value UPDATE baseline wrote %d values, want %d", updatedValues, reencryptBenchValueRows*len(reencryptBenchColumns))
	}

	// The job.
	vacuumFullBench(b, admin)
	t0 = time.Now()
	p, err := d.DB.ReencryptAll(ctx, reencryptBenchJobBatch, nil)
	jobTook := time.Since(t0)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}

	after := benchRemaining(b, d.DB.Pool)
	if after[1] != 0 || after[2] != total || int64(p.Values) != total || p.Users != 1 {
		b.Fatalf("after the job: values per version %v (before %v), job moved %+v", after, before, p)
	}
	if res, _, err := d.DB.FindTestResults(user, phr.TestResultFilter{Limit: 10}); err != nil || len(res) != 10 {
		b.Fatalf("reading after the job: %d results, %v", len(res), err)
	}

	jobRows := reencryptBenchRows + 1 // and the users row
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(jobTook.Seconds(), "job_s")
	b.ReportMetric(float64(p.Values)/jobTook.Seconds(), "job_values_per_s")
	b.ReportMetric(float64(jobRows)/jobTook.Seconds(), "job_rows_per_s")
	b.ReportMetric(float64(aesValues)/aesTook.Seconds(), "aes_values_per_s")
	b.ReportMetric(float64(updatedRows)/rowTook.Seconds(), "update_rows_per_s")
	b.ReportMetric(float64(updatedValues)/valueTook.Seconds(), "update_values_per_s")
	b.Logf("setup: %d test results imported in %.1fs (%d per Import, %d at a time); %d values under v1 (%d test results × 6 + the user's %d)",
		reencryptBenchRows, importTook.Seconds(), reencryptBenchImportBatch, reencryptBenchImporters, total, reencryptBenchRows, userValues)
	b.Logf("job:          ReencryptAll(batch %d) moved %d values of %d rows in %.2fs: %.0f values/s, %.0f rows/s",
		reencryptBenchJobBatch, p.Values, jobRows, jobTook.Seconds(), float64(p.Values)/jobTook.Seconds(), float64(jobRows)/jobTook.Seconds())
	b.Logf("aes:          keyring.Reencrypt of %d values in memory in %.2fs: %.0f values/s",
		aesValues, aesTook.Seconds(), float64(aesValues)/aesTook.Seconds())
	b.Logf("update_row:   %d single-row UPDATEs (SET notes = notes) in %.2fs: %.0f rows/s",
		updatedRows, rowTook.Seconds(), float64(updatedRows)/rowTook.Seconds())
	b.Logf("update_value: %d compare-and-swap UPDATEs (same value) on the first %d rows in %.2fs: %.0f values/s, %.0f rows/s",
		updatedValues, reencryptBenchValueRows, valueTook.Seconds(), float64(updatedValues)/valueTook.Seconds(), float64(reencryptBenchValueRows)/valueTook.Seconds())
	b.Logf("after the job: values per version %v", after)
}

// mustBenchUser is MustUser for benchmarks.
func mustBenchUser(tb testing.TB, db *postgres.DB, email string) context.Context {
	tb.Helper()
	u := &phr.User{Email: email, FullName: "Bench Person", DateOfBirth: "1980-02-03"}
	if err := db.CreateUser(context.Background(), u, "$vnp1$placeholder-hash", false); err != nil {
		tb.Fatalf("create user: %v", err)
	}
	return phr.NewContextWithUserID(context.Background(), u.ID)
}

// reencryptBenchBatch is n lab results numbered from first, with values of realistic length.
func reencryptBenchBatch(first, n int) *phr.ImportBatch {
	tests := []struct{ code, name, unit, rng string }{
		{"2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", "70-99 mg/dL"},
		{"718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "13.5-17.5 g/dL"},
		{"2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "<200 mg/dL"},
		{"2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "0.7-1.3 mg/dL"},
		{"6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", "4.5-11.0 10*3/uL"},
	}
	base := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &phr.ImportBatch{Source: "fhir"}
	for i := first; i < first+n; i++ {
		t := tests[i%len(tests)]
		notes := ""
		if i%4 == 0 {
			notes = "Fasting sample, drawn in the morning."
		}
		b.TestResults = append(b.TestResults, &phr.TestResult{CodeSystem: "http://loinc.org", Code: t.code, Name: t.name,
			Value: strconv.Itoa(50 + i%100), ValueType: "quantity", Unit: t.unit, ReferenceRange: t.rng, Notes: notes,
			EffectiveAt: base.Add(time.Duration(i) * time.Hour), Source: "fhir", SourceID: "bench-obs-" + strconv.Itoa(i)})
	}
	return b
}

type benchRow struct {
	id     string
	values []string // reencryptBenchColumns, as stored
}

// benchAsUser runs fn in a transaction under the user's RLS, as the job's batches run.
func benchAsUser(tb testing.TB, pool *pgxpool.Pool, userID string, fn func(tx pgx.Tx) error) {
	tb.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", userID); err != nil {
			return err
		}
		return fn(tx)
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// readBenchRows reads the user's test results as stored (ciphertext), in id order.
func readBenchRows(tb testing.TB, pool *pgxpool.Pool, userID string) []benchRow {
	tb.Helper()
	var out []benchRow
	benchAsUser(tb, pool, userID, func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), `SELECT id::text, code, name, value, unit, reference_range, notes FROM test_results ORDER BY id`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (benchRow, error) {
			br := benchRow{values: make([]string, len(reencryptBenchColumns))}
			dest := []any{&br.id}
			for i := range br.values {
				dest = append(dest, &br.values[i])
			}
			return br, r.Scan(dest...)
		})
		return err
	})
	return out
}

// benchUpdateInBatches calls update for every row, reencryptBenchJobBatch rows per
// transaction under the user's RLS, and returns the sum of what it reports.
func benchUpdateInBatches(tb testing.TB, pool *pgxpool.Pool, userID string, rows []benchRow, update func(pgx.Tx, benchRow) (int64, error)) int64 {
	tb.Helper()
	var n int64
	for start := 0; start < len(rows); start += reencryptBenchJobBatch {
		batch := rows[start:min(start+reencryptBenchJobBatch, len(rows))]
		benchAsUser(tb, pool, userID, func(tx pgx.Tx) error {
			for _, r := range batch {
				k, err := update(tx, r)
				if err != nil {
					return err
				}
				n += k
			}
			return nil
		})
	}
	return n
}

// vacuumFullBench rewrites test_results packed, as the import left it, so that each write
// phase starts from the same layout rather than from the dead rows of the one before.
func vacuumFullBench(tb testing.TB, admin *pgxpool.Pool) {
	tb.Helper()
	if _, err := admin.Exec(context.Background(), `VACUUM (FULL, ANALYZE) test_results`); err != nil {
		tb.Fatal(err)
	}
}

func benchRemaining(tb testing.TB, pool *pgxpool.Pool) map[int]int64 {
	tb.Helper()
	st, err := postgres.KeyStatuses(context.Background(), pool)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[int]int64{}
	for _, s := range st {
		out[s.Version] = s.Remaining
	}
	return out
}

package postgres_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

func ptr[T any](v T) *T { return &v }

// mustHistory returns every history entry f selects, walking the pages.
func mustHistory(t *testing.T, db *postgres.DB, ctx context.Context, f phr.HistoryFilter) []*phr.HistoryEntry {
	t.Helper()
	var out []*phr.HistoryEntry
	for {
		page, next, err := db.FindHistoryEntries(ctx, f)
		if err != nil {
			t.Fatalf("history %+v: %v", f, err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		f.Cursor = next
	}
}

// prevString is the previous value of field as a string ("" when absent or not a string).
func prevString(e *phr.HistoryEntry, field string) string {
	var s string
	json.Unmarshal(e.Previous[field], &s)
	return s
}

func TestHistoryKeepsWhatEachChangeReplaced(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	aliceID := phr.UserIDFromContext(alice)

	// Profile: a rename and a new date of birth in one correction, then one that changes nothing.
	u, err := d.DB.UpdateUser(alice, phr.UserUpdate{FullName: ptr("Alice Newname"), DateOfBirth: ptr("1981-03-04")})
	if err != nil || u.FullName != "Alice Newname" || u.DateOfBirth != "1981-03-04" {
		t.Fatalf("update: %+v %v", u, err)
	}
	if _, err := d.DB.UpdateUser(alice, phr.UserUpdate{FullName: ptr("Alice Newname")}); err != nil {
		t.Fatal(err)
	}
	prof := mustHistory(t, d.DB, alice, phr.HistoryFilter{Entity: phr.HistoryProfile})
	if len(prof) != 1 {
		t.Fatalf("%d profile entries, want 1 (an unchanged value is no change)", len(prof))
	}
	if e := prof[0]; e.EntityID != aliceID || e.Action != phr.ChangeUpdate ||
		prevString(e, "full_name") != "Test Person alice@example.com" || prevString(e, "date_of_birth") != "1980-02-03" || len(e.Previous) != 2 {
		t.Fatalf("profile entry %+v (previous %s)", e, mustJSON(e.Previous))
	}

	// Health record: a correction, then the deletion.
	rec := &phr.HealthRecord{Kind: phr.KindNote, Title: "Knee pain", Content: json.RawMessage(`{"side":"left"}`)}
	if err := d.DB.CreateHealthRecord(alice, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.UpdateHealthRecord(alice, rec.ID, phr.HealthRecordUpdate{Title: ptr("Right knee pain"), Content: json.RawMessage(`{"side":"right"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := d.DB.DeleteHealthRecord(alice, rec.ID); err != nil {
		t.Fatal(err)
	}
	hr := mustHistory(t, d.DB, alice, phr.HistoryFilter{Entity: phr.HistoryHealthRecord, EntityID: rec.ID})
	if len(hr) != 2 || hr[0].Action != phr.ChangeDelete || hr[1].Action != phr.ChangeUpdate {
		t.Fatalf("record history %+v", hr)
	}
	if got := prevString(hr[1], "title"); got != "Knee pain" || string(hr[1].Previous["content"]) != `{"side":"left"}` || len(hr[1].Previous) != 2 {
		t.Fatalf("update entry keeps %s", mustJSON(hr[1].Previous))
	}
	if got := prevString(hr[0], "title"); got != "Right knee pain" || string(hr[0].Previous["content"]) != `{"side":"right"}` ||
		prevString(hr[0], "kind") != phr.KindNote || string(hr[0].Previous["recorded_at"]) != "null" {
		t.Fatalf("delete entry keeps %s", mustJSON(hr[0].Previous))
	}

	// Test result: a correction of the value keeps the lab's; a non-number is refused for a quantity.
	if _, err := d.DB.Import(alice, sampleBatch("a", 2)); err != nil {
		t.Fatal(err)
	}
	results, _, _ := d.DB.FindTestResults(alice, phr.TestResultFilter{})
	tr := results[0]
	if _, err := d.DB.UpdateTestResult(alice, tr.ID, phr.TestResultUpdate{Value: ptr("high")}); phr.ErrorCode(err) != phr.EINVALID {
		t.Fatalf("a quantity set to a word: %v, want invalid", err)
	}
	for _, v := range []string{"1e400", "<-1E309"} {
		if _, err := d.DB.UpdateTestResult(alice, tr.ID, phr.TestResultUpdate{Value: ptr(v)}); phr.ErrorCode(err) != phr.EINVALID || !strings.Contains(phr.ErrorMessage(err), "finite") {
			t.Fatalf("a quantity set to %s: %v, want invalid (not finite)", v, err)
		}
	}
	got, err := d.DB.UpdateTestResult(alice, tr.ID, phr.TestResultUpdate{Value: ptr("<0.5"), Notes: ptr("re-run\nby the lab")})
	if err != nil || got.Value != "<0.5" || got.Notes != "re-run\nby the lab" || got.Name != "Glucose" {
		t.Fatalf("correction: %+v %v", got, err)
	}
	if again, _ := d.DB.FindTestResultByID(alice, tr.ID); again.Value != "<0.5" {
		t.Fatalf("stored value %q", again.Value)
	}
	th := mustHistory(t, d.DB, alice, phr.HistoryFilter{Entity: phr.HistoryTestResult, EntityID: tr.ID})
	if len(th) != 1 || prevString(th[0], "value") != "95" || prevString(th[0], "notes") != "" || len(th[0].Previous) != 2 {
		t.Fatalf("result history %+v", th)
	}
	if err := d.DB.DeleteTestResult(alice, tr.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.FindTestResultByID(alice, tr.ID); phr.ErrorCode(err) != phr.ENOTFOUND {
		t.Fatalf("deleted result: %v", err)
	}
	th = mustHistory(t, d.DB, alice, phr.HistoryFilter{Entity: phr.HistoryTestResult, EntityID: tr.ID})
	if len(th) != 2 || th[0].Action != phr.ChangeDelete || prevString(th[0], "value") != "<0.5" || prevString(th[0], "code") != "2339-0" {
		t.Fatalf("result history after the deletion %+v", th)
	}

	// Everything, page by page as the export reads it: each entry once, newest first.
	all := map[string]bool{}
	var last time.Time
	for cursor := ""; ; {
		page, next, err := d.DB.FindHistory(alice, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if all[e.ID] {
				t.Fatalf("entry %s listed twice", e.ID)
			}
			if !last.IsZero() && e.ChangedAt.After(last) {
				t.Fatal("history not newest first")
			}
			all[e.ID], last = true, e.ChangedAt
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(all) != 5 {
		t.Fatalf("FindHistory walked %d entries, want 5", len(all))
	}
	// Attack: a cursor of one list replayed on another.
	_, next, _ := d.DB.FindHistory(alice, "", 1)
	if _, _, err := d.DB.FindHistoryEntries(alice, phr.HistoryFilter{Entity: phr.HistoryProfile, Cursor: next}); phr.ErrorCode(err) != phr.EINVALID {
		t.Fatalf("cursor of another list: %v", err)
	}
}

func TestHistoryOfAnotherUserIsNotFound(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	if _, err := d.DB.Import(alice, sampleBatch("a", 1)); err != nil {
		t.Fatal(err)
	}
	res, _, _ := d.DB.FindTestResults(alice, phr.TestResultFilter{})
	recs, _, _ := d.DB.FindHealthRecords(alice, phr.HealthRecordFilter{})
	if _, err := d.DB.UpdateTestResult(alice, res[0].ID, phr.TestResultUpdate{Name: ptr("Fasting glucose")}); err != nil {
		t.Fatal(err)
	}
	if err := d.DB.DeleteHealthRecord(alice, recs[0].ID); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		// Attack: read, correct or delete a stranger's result by its id.
		"result history": func() error {
			_, _, err := d.DB.FindHistoryEntries(bob, phr.HistoryFilter{Entity: phr.HistoryTestResult, EntityID: res[0].ID})
			return err
		}(),
		"deleted record history": func() error {
			_, _, err := d.DB.FindHistoryEntries(bob, phr.HistoryFilter{Entity: phr.HistoryHealthRecord, EntityID: recs[0].ID})
			return err
		}(),
		"correct": func() error {
			_, err := d.DB.UpdateTestResult(bob, res[0].ID, phr.TestResultUpdate{Value: ptr("1")})
			return err
		}(),
		"delete": d.DB.DeleteTestResult(bob, res[0].ID),
	} {
		if phr.ErrorCode(err) != phr.ENOTFOUND {
			t.Errorf("bob %s of alice's: %v, want not_found", name, err)
		}
	}
	if got, _, err := d.DB.FindHistory(bob, "", 0); err != nil || len(got) != 0 {
		t.Fatalf("bob's history: %d entries, %v", len(got), err)
	}
	// Through RLS alone (a statement as any code path that forgot a filter would run it).
	var n int
	tx, err := d.DB.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	tx.Exec(context.Background(), "SELECT set_config('app.current_user_id', $1, true)", phr.UserIDFromContext(bob))
	if err := tx.QueryRow(context.Background(), "SELECT count(*) FROM change_history").Scan(&n); err != nil || n != 0 {
		t.Fatalf("bob sees %d history rows (%v)", n, err)
	}
	if got, _ := d.DB.FindTestResultByID(alice, res[0].ID); got.Value != "95" || got.Name != "Fasting glucose" {
		t.Fatalf("alice's result after bob's attempts: %+v", got)
	}
}

func TestHistoryIsAppendOnlyEncryptedAndErasedWithTheUser(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	for _, u := range []context.Context{alice, bob} {
		if _, err := d.DB.UpdateUser(u, phr.UserUpdate{FullName: ptr("Renamed Person")}); err != nil {
			t.Fatal(err)
		}
	}
	for name, url := range map[string]string{"app": d.AppURL, "owner": d.OwnerURL} {
		pool := pgtest.MustPool(t, url, 1)
		for _, stmt := range []string{
			// Attack: rewrite what a record said before, or make a correction vanish.
			"UPDATE change_history SET changed_at = now() - interval '1 year'",
			"UPDATE change_history SET previous = previous",
			"DELETE FROM change_history",
			"TRUNCATE change_history",
		} {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", phr.UserIDFromContext(alice))
			_, err = tx.Exec(ctx, stmt)
			tx.Rollback(ctx)
			if err == nil {
				t.Errorf("%s: %q succeeded", name, stmt)
			}
		}
	}
	// A thief with the database learns nothing: the previous name is ciphertext, under the
	// data key, bound to its entry.
	admin := pgtest.MustPool(t, d.AdminURL, 1)
	var dump string
	if err := admin.QueryRow(ctx, `SELECT string_agg(h::text, '') FROM change_history h`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump, "Test Person") || strings.Contains(dump, "full_name") || !strings.Contains(dump, "v1:") {
		t.Fatalf("history rows in the clear: %.200s", dump)
	}
	// Attack: move bob's entry's ciphertext into alice's (triggers off, as a superuser can).
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	if _, err := tx.Exec(ctx, `UPDATE change_history SET previous = (SELECT previous FROM change_history WHERE user_id = $1)
		WHERE user_id = $2`, phr.UserIDFromContext(bob), phr.UserIDFromContext(alice)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, err = d.DB.FindHistory(alice, "", 0)
	if got, want := phr.ErrorMessage(err), "A stored value could not be read."; got != want {
		t.Fatalf("a moved history ciphertext: %v, want %q", err, want)
	}
	// An erasure takes the history with the user, and nobody else's.
	if _, err := d.DB.EraseUser(alice); err != nil {
		t.Fatal(err)
	}
	var left, others int
	if err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE user_id = $1), count(*) FILTER (WHERE user_id <> $1) FROM change_history`,
		phr.UserIDFromContext(alice)).Scan(&left, &others); err != nil {
		t.Fatal(err)
	}
	if left != 0 || others != 1 {
		t.Fatalf("after alice's erasure: %d of her history rows, %d of bob's; want 0 and 1", left, others)
	}
}

func TestReencryptionMovesTheHistoryThroughItsSwapOnly(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	w := mustWrapper(t, d)
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	for i, name := range []string{"Second Name", "Third Name", "Fourth Name"} {
		if _, err := d.DB.UpdateUser(alice, phr.UserUpdate{FullName: ptr(name)}); err != nil {
			t.Fatal(i, err)
		}
	}
	if _, err := d.DB.UpdateUser(bob, phr.UserUpdate{DateOfBirth: ptr("1970-01-01")}); err != nil {
		t.Fatal(err)
	}
	countV := func(v string) int {
		t.Helper()
		var n int
		if err := pgtest.MustPool(t, d.AdminURL, 1).QueryRow(ctx, `SELECT count(*) FROM change_history WHERE previous LIKE $1 || ':%'`, v).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if countV("v1") != 4 {
		t.Fatalf("%d history values under v1, want 4", countV("v1"))
	}
	before := remaining(t, d)
	if _, err := postgres.RotateKey(ctx, d.DB.Pool, w); err != nil {
		t.Fatal(err)
	}
	if err := postgres.ReloadKeyring(ctx, d.DB.Pool, w, d.DB.Keys); err != nil {
		t.Fatal(err)
	}
	p, err := d.DB.ReencryptAll(ctx, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	after := remaining(t, d)
	if after[1] != 0 || int64(p.Values) != before[1] || countV("v2") != 4 {
		t.Fatalf("after re-encryption: %v (moved %d of %d), %d history values under v2", after, p.Values, before[1], countV("v2"))
	}
	hist := mustHistory(t, d.DB, alice, phr.HistoryFilter{})
	if len(hist) != 3 || prevString(hist[0], "full_name") != "Third Name" || prevString(hist[2], "full_name") != "Test Person alice@example.com" {
		t.Fatalf("alice's history after re-encryption: %+v", hist)
	}

	// The swap is no way around append-only: only the caller's own entries, only from an
	// older key to the write key, only when the old value is the stored one.
	var aliceEntry, bobEntry, stored string
	admin := pgtest.MustPool(t, d.AdminURL, 1)
	admin.QueryRow(ctx, `SELECT id::text, previous FROM change_history WHERE user_id = $1 LIMIT 1`, phr.UserIDFromContext(alice)).Scan(&aliceEntry, &stored)
	admin.QueryRow(ctx, `SELECT id::text FROM change_history WHERE user_id = $1`, phr.UserIDFromContext(bob)).Scan(&bobEntry)
	forged, err := d.DB.Keys.EncryptString(`{"full_name":"Forged"}`, keyring.Field{Table: "change_history", Column: "previous", RowID: aliceEntry})
	if err != nil {
		t.Fatal(err)
	}
	swap := func(asUser context.Context, entry, old, new string) bool {
		t.Helper()
		tx, err := d.DB.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", phr.UserIDFromContext(asUser))
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT change_history_reencrypt($1, 'previous', $2, $3)`, entry, old, new).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for name, ok := range map[string]bool{
		// Attack: rewrite an entry already under the write key.
		"current to current": swap(alice, aliceEntry, stored, forged),
		// Attack: rewrite another user's entry.
		"another user's": swap(bob, aliceEntry, stored, forged),
		// Attack: swap in a value under a retired key.
		"to an old key": swap(alice, aliceEntry, "v1:AAAAAAAAAAAAAAAA::AAAAAAAAAAAAAAAAAAAAAA", "v1:AAAAAAAAAAAAAAAA::AAAAAAAAAAAAAAAAAAAAAA"),
	} {
		if ok {
			t.Errorf("swap %s succeeded", name)
		}
	}
	if _, err := pgtest.MustPool(t, d.AppURL, 1).Exec(ctx, `UPDATE change_history SET previous = previous`); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("UPDATE by the server role: %v, want permission denied", err)
	}
	if hist := mustHistory(t, d.DB, alice, phr.HistoryFilter{}); prevString(hist[0], "full_name") != "Third Name" {
		t.Fatalf("alice's newest entry now keeps %s", mustJSON(hist[0].Previous))
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

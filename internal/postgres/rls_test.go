package postgres_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

// userDataTables are the tables that hold a user's data. The catalog test below fails
// when a table with a user_id column is missing from RLS, so this list cannot silently
// fall behind the schema.
var userDataTables = []string{"users", "account_tokens", "sessions", "refresh_tokens", "mfa_recovery_codes", "test_results", "health_records", "files", "file_chunks", "privacy_choices", "privacy_requests", "change_history"}

// appendOnlyTables are user-data tables the server's role may not delete from at all: a
// DELETE is refused for lack of privilege before RLS is asked.
var appendOnlyTables = map[string]bool{"privacy_choices": true, "privacy_requests": true, "change_history": true}

// MustUser registers a verified user and returns a context acting as them.
func MustUser(t *testing.T, db *postgres.DB, email string) context.Context {
	t.Helper()
	u := &phr.User{Email: email, FullName: "Test Person " + email, DateOfBirth: "1980-02-03"}
	if err := db.CreateUser(context.Background(), u, "$vnp1$placeholder-hash", false); err != nil {
		t.Fatalf("create user: %v", err)
	}
	return phr.NewContextWithUserID(context.Background(), u.ID)
}

func sampleBatch(prefix string, n int) *phr.ImportBatch {
	b := &phr.ImportBatch{Source: "fhir"}
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		b.TestResults = append(b.TestResults, &phr.TestResult{CodeSystem: "http://loinc.org", Code: "2339-0",
			Name: "Glucose", Value: "95", ValueType: "quantity", Unit: "mg/dL", EffectiveAt: base.AddDate(0, 0, i),
			Source: "fhir", SourceID: prefix + "-obs-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)})
	}
	b.HealthRecords = append(b.HealthRecords, &phr.HealthRecord{Kind: phr.KindCondition, Title: "Hypertension",
		Content: json.RawMessage(`{"resourceType":"Condition"}`), RecordedAt: base, Source: "fhir", SourceID: prefix + "-cond-1"})
	return b
}

func TestEveryTableWithUserDataHasForcedRLS(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	owner := pgtest.MustPool(t, d.OwnerURL, 1)
	rows, err := owner.Query(context.Background(), `
		SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
		       EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
		  AND (c.relname = 'users' OR EXISTS (SELECT 1 FROM pg_attribute a
		       WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped))`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for rows.Next() {
		var name string
		var enabled, forced, hasPolicy bool
		if err := rows.Scan(&name, &enabled, &forced, &hasPolicy); err != nil {
			t.Fatal(err)
		}
		seen[name] = true
		if !enabled || !forced || !hasPolicy {
			t.Errorf("table %s: rls enabled=%v forced=%v policy=%v; every table with user data needs all three", name, enabled, forced, hasPolicy)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range userDataTables {
		if !seen[name] {
			t.Errorf("table %s is listed as user data but was not found with a user_id column", name)
		}
	}
}

func TestServerRoleCannotBypassRLS(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	var super, bypass bool
	var owned int
	err := d.DB.Pool.QueryRow(ctx, `SELECT rolsuper, rolbypassrls,
		(SELECT count(*) FROM pg_class WHERE relowner = r.oid) FROM pg_roles r WHERE rolname = current_user`).Scan(&super, &bypass, &owned)
	if err != nil {
		t.Fatal(err)
	}
	if super || bypass || owned != 0 {
		t.Fatalf("server role: superuser=%v bypassrls=%v owns=%d; want none", super, bypass, owned)
	}
	if err := postgres.CheckServerRole(ctx, d.DB.Pool); err != nil {
		t.Fatalf("CheckServerRole(app) = %v", err)
	}
	for name, url := range map[string]string{"owner": d.OwnerURL, "superuser": d.AdminURL} {
		if err := postgres.CheckServerRole(ctx, pgtest.MustPool(t, url, 1)); err == nil {
			t.Errorf("CheckServerRole(%s) accepted a role that RLS does not bind", name)
		}
	}
}

func TestNoUserSetSeesNothingAndWritesNothing(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	if _, err := d.DB.Import(alice, sampleBatch("a", 3)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, table := range userDataTables {
		t.Run(table, func(t *testing.T) {
			var n int
			// A plain statement, as any code path that forgot to set the user would run it.
			if err := d.DB.Pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("%s: %d rows visible with no user set", table, n)
			}
			// An UPDATE or DELETE without a user touches nothing.
			tag, err := d.DB.Pool.Exec(ctx, "DELETE FROM "+table)
			if appendOnlyTables[table] {
				if err == nil || !strings.Contains(err.Error(), "permission denied") {
					t.Fatalf("%s: DELETE by the server role: %v, want permission denied", table, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tag.RowsAffected() != 0 {
				t.Fatalf("%s: deleted %d rows with no user set", table, tag.RowsAffected())
			}
		})
	}
	inserts := map[string]string{
		"users":              `INSERT INTO users (id, email_index, email, full_name, date_of_birth, password_hash) VALUES (gen_random_uuid(), '\x01', $1, $1, $1, 'x')`,
		"account_tokens":     `INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) SELECT '\x01', gen_random_uuid(), 'unlock', now() WHERE $1 <> ''`,
		"mfa_recovery_codes": `INSERT INTO mfa_recovery_codes (code_hash, user_id) SELECT '\x01', gen_random_uuid() WHERE $1 <> ''`,
		"sessions":           `INSERT INTO sessions (id, user_id, expires_at) SELECT gen_random_uuid(), gen_random_uuid(), now() WHERE $1 <> ''`,
		"refresh_tokens":     `INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at) SELECT '\x01', gen_random_uuid(), gen_random_uuid(), now() WHERE $1 <> ''`,
		"test_results": `INSERT INTO test_results (id, user_id, code_system, code, code_index, name, value, value_type, unit, reference_range, notes, source)
			VALUES (gen_random_uuid(), gen_random_uuid(), 'x', $1, '\x01', $1, $1, 'quantity', $1, $1, $1, 'manual')`,
		"health_records":  `INSERT INTO health_records (id, user_id, kind, title, content, source) VALUES (gen_random_uuid(), gen_random_uuid(), 'note', $1, $1, 'manual')`,
		"files":           `INSERT INTO files (id, user_id, name, content_type, size, chunks, sha256) VALUES (gen_random_uuid(), gen_random_uuid(), $1, 'text/plain', 0, 0, '\x')`,
		"file_chunks":     `INSERT INTO file_chunks (id, file_id, user_id, idx, data) SELECT f || ':0', f, gen_random_uuid(), 0, $1 FROM gen_random_uuid() f`,
		"privacy_choices": `INSERT INTO privacy_choices (user_id, kind, purpose, value) SELECT gen_random_uuid(), 'do_not_sell', '', true WHERE $1 <> ''`,
		"privacy_requests": `INSERT INTO privacy_requests (id, user_id, kind, received_at, due_at)
			SELECT gen_random_uuid(), gen_random_uuid(), 'export', now(), now() + interval '1 month' WHERE $1 <> ''`,
		"change_history": `INSERT INTO change_history (id, user_id, entity, entity_id, action, previous, changed_at)
			VALUES (gen_random_uuid(), gen_random_uuid(), 'test_result', gen_random_uuid(), 'delete', $1, now())`,
	}
	ct := "v1:AAAAAAAAAAAAAAAA::AAAAAAAAAAAAAAAAAAAAAA"
	for _, table := range userDataTables {
		if _, err := d.DB.Pool.Exec(ctx, inserts[table], ct); err == nil {
			t.Errorf("%s: insert with no user set succeeded", table)
		} else if !strings.Contains(err.Error(), "row-level security") {
			t.Errorf("%s: insert failed for another reason than RLS: %v", table, err)
		}
	}
}

func TestPooledConnectionCarriesNothingToTheNextUser(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	// One connection, so Bob's request runs on the very connection Alice's used.
	one := &postgres.DB{Pool: pgtest.MustPool(t, d.AppURL, 1), Keys: d.DB.Keys}
	alice := MustUser(t, one, "alice@example.com")
	bob := MustUser(t, one, "bob@example.com")
	if _, err := one.Import(alice, sampleBatch("a", 2)); err != nil {
		t.Fatal(err)
	}
	results, _, err := one.FindTestResults(alice, phr.TestResultFilter{})
	if err != nil || len(results) != 2 {
		t.Fatalf("alice's results = %d, %v; want 2", len(results), err)
	}
	got, _, err := one.FindTestResults(bob, phr.TestResultFilter{})
	if err != nil || len(got) != 0 {
		t.Fatalf("bob sees %d results (err %v) right after alice on the same connection", len(got), err)
	}
	if _, err := one.FindTestResultByID(bob, results[0].ID); phr.ErrorCode(err) != phr.ENOTFOUND {
		t.Fatalf("bob reading alice's result: %v, want not_found", err)
	}
	var setting string
	if err := one.Pool.QueryRow(context.Background(), "SELECT coalesce(current_setting('app.current_user_id', true), '')").Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "" {
		t.Fatalf("the connection kept app.current_user_id = %q after the transaction", setting)
	}
}

func TestCrossUserAccessIsNotFound(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	rec := &phr.HealthRecord{Kind: phr.KindNote, Title: "Knee pain", Content: json.RawMessage(`{"text":"left knee"}`)}
	if err := d.DB.CreateHealthRecord(alice, rec); err != nil {
		t.Fatal(err)
	}
	title := "stolen"
	for name, err := range map[string]error{
		"read": func() error { _, err := d.DB.FindHealthRecordByID(bob, rec.ID); return err }(),
		"update": func() error {
			_, err := d.DB.UpdateHealthRecord(bob, rec.ID, phr.HealthRecordUpdate{Title: &title})
			return err
		}(),
		"delete": d.DB.DeleteHealthRecord(bob, rec.ID),
	} {
		if got := phr.ErrorCode(err); got != phr.ENOTFOUND {
			t.Errorf("bob %s alice's record: %v, want not_found", name, err)
		}
	}
	got, err := d.DB.FindHealthRecordByID(alice, rec.ID)
	if err != nil || got.Title != "Knee pain" {
		t.Fatalf("alice's record after bob's attempts: %+v, %v", got, err)
	}
}

func TestEncryptedColumnsHoldOnlyCiphertext(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	if _, err := d.DB.Import(alice, sampleBatch("a", 1)); err != nil {
		t.Fatal(err)
	}
	owner := pgtest.MustPool(t, d.OwnerURL, 1)
	want := map[string]bool{
		"users.email": true, "users.full_name": true, "users.date_of_birth": true,
		"test_results.code": true, "test_results.name": true, "test_results.value": true, "test_results.unit": true,
		"test_results.reference_range": true, "test_results.notes": true,
		"health_records.title": true, "health_records.content": true, "change_history.previous": true,
	}
	rows, err := owner.Query(context.Background(), `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND domain_name = 'ciphertext'`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for rows.Next() {
		var c string
		rows.Scan(&c)
		got[c] = true
	}
	for c := range want {
		if !got[c] {
			t.Errorf("column %s is not of type ciphertext", c)
		}
	}
	// The database itself refuses plaintext in an encrypted column, whoever writes it.
	_, err = pgtest.MustPool(t, d.AdminURL, 1).Exec(context.Background(), `UPDATE users SET full_name = 'Alice Plain'`)
	if err == nil {
		t.Fatal("plaintext full_name accepted")
	}
}

func TestCiphertextMovedToAnotherRowFailsCleanly(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	ra := &phr.HealthRecord{Kind: phr.KindNote, Title: "Alice secret", Content: json.RawMessage(`"a"`)}
	rb := &phr.HealthRecord{Kind: phr.KindNote, Title: "Bob note", Content: json.RawMessage(`"b"`)}
	if err := d.DB.CreateHealthRecord(alice, ra); err != nil {
		t.Fatal(err)
	}
	if err := d.DB.CreateHealthRecord(bob, rb); err != nil {
		t.Fatal(err)
	}
	// An attacker with write access to the database copies Alice's title into Bob's row.
	owner := pgtest.MustPool(t, d.AdminURL, 1)
	if _, err := owner.Exec(context.Background(), `UPDATE health_records SET title = (SELECT title FROM health_records WHERE id = $1) WHERE id = $2`, ra.ID, rb.ID); err != nil {
		t.Fatal(err)
	}
	_, err := d.DB.FindHealthRecordByID(bob, rb.ID)
	if err == nil {
		t.Fatal("a ciphertext moved to another row decrypted")
	}
	if got, want := phr.ErrorMessage(err), "A stored value could not be read."; got != want {
		t.Fatalf("message = %q, want %q", got, want)
	}
	if strings.Contains(err.Error(), "Alice") {
		t.Fatalf("error leaks plaintext: %v", err)
	}
}

func TestPaginationVisitsEveryRowOnce(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	b := sampleBatch("a", 57)
	// Some results without a date, and several sharing one: the keyset must still be total.
	for i := 0; i < 57; i += 5 {
		b.TestResults[i].EffectiveAt = time.Time{}
	}
	for i := 1; i < 57; i += 7 {
		b.TestResults[i].EffectiveAt = time.Date(2021, 5, 5, 0, 0, 0, 0, time.UTC)
	}
	if _, err := d.DB.Import(alice, b); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	cursor, pages := "", 0
	var last *phr.TestResult
	for {
		page, next, err := d.DB.FindTestResults(alice, phr.TestResultFilter{Cursor: cursor, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range page {
			if seen[r.ID] {
				t.Fatalf("result %s seen twice", r.ID)
			}
			seen[r.ID] = true
			if last != nil && !last.EffectiveAt.IsZero() && !r.EffectiveAt.IsZero() && r.EffectiveAt.After(last.EffectiveAt) {
				t.Fatalf("not newest first: %v after %v", r.EffectiveAt, last.EffectiveAt)
			}
			if last != nil && last.EffectiveAt.IsZero() && !r.EffectiveAt.IsZero() {
				t.Fatalf("a dated result after an undated one")
			}
			last = r
		}
		if next == "" {
			break
		}
		if strings.Contains(next, "2021") || strings.Contains(next, last.ID) {
			t.Fatalf("cursor %q shows what it points at", next)
		}
		// Bob cannot use Alice's cursor.
		if _, _, err := d.DB.FindTestResults(bob, phr.TestResultFilter{Cursor: next}); phr.ErrorCode(err) != phr.EINVALID {
			t.Fatalf("bob using alice's cursor: %v, want invalid", err)
		}
		cursor = next
	}
	if got, want := len(seen), 57; got != want {
		t.Fatalf("visited %d results, want %d", got, want)
	}
	if got, want := pages, 6; got != want {
		t.Fatalf("pages = %d, want %d", got, want)
	}
	for _, bad := range []int{-1, 101} {
		if _, _, err := d.DB.FindTestResults(alice, phr.TestResultFilter{Limit: bad}); phr.ErrorCode(err) != phr.EINVALID {
			t.Errorf("limit %d: %v, want invalid", bad, err)
		}
	}
	if _, _, err := d.DB.FindTestResults(alice, phr.TestResultFilter{Cursor: "garbage"}); phr.ErrorCode(err) != phr.EINVALID {
		t.Errorf("garbage cursor: %v, want invalid", err)
	}
}

func TestImportIsIdempotentAndAllOrNothing(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	res, err := d.DB.Import(alice, sampleBatch("a", 4))
	if err != nil {
		t.Fatal(err)
	}
	if res.TestResultsCreated != 4 || res.HealthRecordsCreated != 1 || res.Unchanged != 0 {
		t.Fatalf("first import = %+v", res)
	}
	res, err = d.DB.Import(alice, sampleBatch("a", 4))
	if err != nil {
		t.Fatal(err)
	}
	if res.TestResultsCreated != 0 || res.HealthRecordsCreated != 0 || res.Updated != 0 || res.Unchanged != 5 {
		t.Fatalf("second import = %+v, want all unchanged", res)
	}
	// The lab amends one result and the record: a re-import updates them in place.
	before, _, _ := d.DB.FindTestResults(alice, phr.TestResultFilter{Limit: 100})
	amended := sampleBatch("a", 4)
	amended.TestResults[2].Value = "99"
	amended.HealthRecords[0].Title = "Hypertension, resolved"
	if res, err = d.DB.Import(alice, amended); err != nil {
		t.Fatal(err)
	}
	if res.Updated != 2 || res.Unchanged != 3 || res.TestResultsCreated != 0 {
		t.Fatalf("import of an amended bundle = %+v, want 2 updated", res)
	}
	after, _, _ := d.DB.FindTestResults(alice, phr.TestResultFilter{Limit: 100})
	values := map[string]string{}
	for _, r := range after {
		values[r.ID] = r.Value
	}
	n99 := 0
	for _, r := range before {
		if values[r.ID] == "99" {
			n99++
		} else if values[r.ID] != r.Value {
			t.Fatalf("result %s changed from %q to %q, or lost its id", r.ID, r.Value, values[r.ID])
		}
	}
	if n99 != 1 || len(after) != 4 {
		t.Fatalf("%d results hold the amended value (of %d), want 1 of 4", n99, len(after))
	}
	recs, _, _ := d.DB.FindHealthRecords(alice, phr.HealthRecordFilter{Limit: 10})
	if len(recs) != 1 || recs[0].Title != "Hypertension, resolved" {
		t.Fatalf("records after the amendment: %+v", recs)
	}
	// A batch whose last item the database refuses stores none of its items.
	bad := sampleBatch("b", 3)
	bad.HealthRecords[0].Kind = "not-a-kind"
	if _, err := d.DB.Import(alice, bad); err == nil {
		t.Fatal("a batch with an invalid record was stored")
	}
	got, _, err := d.DB.FindTestResults(alice, phr.TestResultFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("after the failed import alice has %d results, want 4", len(got))
	}
	// The same source ids imported by another user are that user's own rows.
	bob := MustUser(t, d.DB, "bob@example.com")
	res, err = d.DB.Import(bob, sampleBatch("a", 4))
	if err != nil || res.TestResultsCreated != 4 {
		t.Fatalf("bob's import of the same bundle = %+v, %v", res, err)
	}
}

func TestAuditLogIsAppendOnly(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	store := &postgres.AuditStore{Pool: d.DB.Pool}
	if err := store.WriteAuditEvent(ctx, &phr.AuditEvent{Timestamp: time.Now(), Action: "GET /healthz", StatusCode: 200, RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	for name, url := range map[string]string{"app": d.AppURL, "owner": d.OwnerURL, "superuser": d.AdminURL} {
		pool := pgtest.MustPool(t, url, 1)
		month := "audit_log_" + time.Now().UTC().Format("2006_01")
		for _, stmt := range []string{"UPDATE audit_log SET status_code = 500", "DELETE FROM audit_log", "TRUNCATE audit_log",
			// Attack: go around the parent, straight at this month's partition.
			"UPDATE " + month + " SET status_code = 500", "DELETE FROM " + month, "TRUNCATE " + month,
			// Attack: reset the chain's head to hide a cut.
			"DELETE FROM audit_chain_head", "TRUNCATE audit_chain_head"} {
			if _, err := pool.Exec(ctx, stmt); err == nil {
				t.Errorf("%s: %q succeeded", name, stmt)
			}
		}
	}
	var n int
	if err := pgtest.MustPool(t, d.OwnerURL, 1).QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&n); err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("the owner sees %d rows, want 1", n)
	}
	// The server's role reads nothing of the trail but a user's own rows (access history).
	if err := d.DB.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&n); err != nil || n != 0 {
		t.Errorf("the server role with no user set reads %d audit rows (%v)", n, err)
	}
}

func TestCredentialsAreFoundByEmailBlindIndex(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	u := &phr.User{Email: "Carol@Example.com", FullName: "Carol", DateOfBirth: "1990-01-01"}
	if err := d.DB.CreateUser(ctx, u, "hash-1", false); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"carol@example.com", "  CAROL@EXAMPLE.COM "} {
		c, err := d.DB.FindCredentialsByEmail(ctx, email)
		if err != nil || c.UserID != u.ID || c.PasswordHash != "hash-1" || c.EmailVerified {
			t.Fatalf("FindCredentialsByEmail(%q) = %+v, %v", email, c, err)
		}
	}
	if _, err := d.DB.FindCredentialsByEmail(ctx, "nobody@example.com"); phr.ErrorCode(err) != phr.ENOTFOUND {
		t.Fatalf("unknown email: %v", err)
	}
	dup := &phr.User{Email: "carol@EXAMPLE.com", FullName: "Other", DateOfBirth: "1990-01-01"}
	if err := d.DB.CreateUser(ctx, dup, "hash-2", false); phr.ErrorCode(err) != phr.ECONFLICT {
		t.Fatalf("second account for the same email: %v, want conflict", err)
	}
}

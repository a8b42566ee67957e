package web_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/devdb"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
)

// TestErasureLeavesNothingButAnAuditTrailThatLeadsNowhere proves an erasure with the tool a
// thief (or a backup) would use: pg_dump of the whole database, read as the superuser. Every
// ciphertext and hash stored in a row of hers, and the blind index of her email, are in a
// dump taken before DELETE /api/me and in none taken after; the other user's all stay.
func TestErasureLeavesNothingButAnAuditTrailThatLeadsNowhere(t *testing.T) {
	t.Parallel()
	pgDump := mustPGDump(t)
	e := MustEnv(t)
	ctx := context.Background()
	admin := pgtest.MustPool(t, e.db.AdminURL, 1)

	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	for _, token := range []string{ana, bob} {
		e.mustHoldSomethingEverywhere(token)
	}
	anaID := e.do("GET", "/api/me", ana, nil).json(t)["id"].(string)
	bobID := e.do("GET", "/api/me", bob, nil).json(t)["id"].(string)
	hers, his := storedSecrets(t, admin, anaID), storedSecrets(t, admin, bobID)
	anaIndex := e.emailIndexForms("ana@example.com")
	bobIndex := e.emailIndexForms("bob@example.com")

	// The witness can see: before the erasure the dump shows all of it.
	before := mustDump(t, pgDump, e.db.AdminURL)
	for v, where := range hers {
		if !strings.Contains(before, v) {
			t.Fatalf("%s of hers is not in the dump before the erasure: the check would prove nothing", where)
		}
	}
	if !strings.Contains(before, anaIndex[0]) {
		t.Fatal("the blind index of her email is not in the dump before the erasure: the check would prove nothing")
	}

	// Attack: erase an account with a stolen, stale session and a wrong password.
	if r := e.do("DELETE", "/api/me", ana, map[string]string{"password": "Wrong-Passw0rd!"}); r.status != http.StatusBadRequest {
		t.Fatalf("erase with a wrong password: %d %s", r.status, r.body)
	}
	r := e.do("DELETE", "/api/me", ana, map[string]string{"password": testPassword})
	if r.status != http.StatusOK {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	body := r.json(t)
	rec := body["receipt"].(map[string]any)
	erased := rec["erased"].(map[string]any)
	if rec["user_id"] != anaID || body["signature"] == "" || erased["health_records"] != 2.0 ||
		erased["test_results"] != 2.0 || erased["files"] != 2.0 || erased["privacy_choices"] != 2.0 {
		t.Fatalf("receipt %v", body)
	}
	if r := e.do("GET", "/api/me", ana, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("her token after erasure: %d", r.status)
	}
	// A sign-in with her address afterwards is an unknown account's, and stores nothing of her.
	wrong := e.signIn("nobody@example.com", testPassword)
	if r := e.signIn("ana@example.com", testPassword); r.status != wrong.status || withoutRequestID(r.body) != withoutRequestID(wrong.body) {
		t.Fatalf("sign-in after erasure: %d %s, want the unknown-account answer", r.status, r.body)
	}

	after := mustDump(t, pgDump, e.db.AdminURL)
	for v, where := range hers {
		if strings.Contains(after, v) {
			t.Errorf("%s of the erased user is still in the dump", where)
		}
	}
	for _, form := range anaIndex {
		if strings.Contains(after, form) {
			t.Errorf("the blind index of her email is still in the dump (as %q…)", form[:8])
		}
	}
	for v, where := range his {
		if !strings.Contains(after, v) {
			t.Errorf("%s of the other user is gone from the dump", where)
		}
	}
	if !strings.Contains(after, bobIndex[0]) {
		t.Error("the blind index of the other user's email is gone from the dump")
	}
	if r := e.do("GET", "/api/me", bob, nil); r.status != http.StatusOK {
		t.Fatalf("another user after the erasure: %d", r.status)
	}

	// What is left is the audit trail, whose rows carry an id that leads nowhere.
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE user_id = $1`, anaID).Scan(&n); err != nil || n == 0 {
		t.Fatalf("the audit trail lost its rows: %d %v", n, err)
	}
	if got := e.countMails("ana@example.com", "was erased"); got != 1 {
		t.Fatalf("%d receipt mails", got)
	}
}

// mustHoldSomethingEverywhere gives the user a row in every table that can hold her data:
// imported test results and a record, a record of her own, two documents (one of several
// storage chunks), privacy choices, a corrected name, a confirmed second factor with recovery
// codes, and a pending change of address.
func (e *testEnv) mustHoldSomethingEverywhere(token string) {
	e.t.Helper()
	steps := []struct {
		what string
		r    *response
		want int
	}{
		{"import", e.do("POST", "/api/imports/fhir", token, smallBundle, "Content-Type", "application/fhir+json"), http.StatusOK},
		{"record", e.do("POST", "/api/health-records", token, map[string]any{"kind": "note", "title": "Migraine diary", "content": "aura"}), http.StatusCreated},
		{"letter", e.upload(token, "file", "letter.txt", "text/plain", []byte("lab letter")), http.StatusCreated},
		{"scan", e.upload(token, "file", "scan.txt", "text/plain", bigText("scan")), http.StatusCreated},
		{"do-not-sell", e.do("PUT", "/api/me/do-not-sell", token, map[string]any{"do_not_sell": true}), http.StatusOK},
		{"consent", e.do("PUT", "/api/me/consents", token, map[string]any{"purpose": "research", "granted": true}), http.StatusOK},
		// A correction keeps the value it replaced in the history of changes.
		{"correction", e.do("PATCH", "/api/me", token, map[string]any{"full_name": "Corrected Name"}), http.StatusOK},
	}
	for _, s := range steps {
		if s.r.status != s.want {
			e.t.Fatalf("%s: %d %s", s.what, s.r.status, s.r.body)
		}
	}
	r := e.do("POST", "/api/me/mfa/totp", token, nil)
	if r.status != http.StatusCreated {
		e.t.Fatalf("enrol TOTP: %d %s", r.status, r.body)
	}
	otp := totpCode(e.t, r.json(e.t)["secret"].(string), time.Now())
	if r := e.do("POST", "/api/me/mfa/totp/confirm", token, map[string]string{"otp": otp}); r.status != http.StatusOK {
		e.t.Fatalf("confirm TOTP: %d %s", r.status, r.body)
	}
	newEmail := "new-" + strings.ToLower(e.do("GET", "/api/me", token, nil).json(e.t)["id"].(string)[:8]) + "@example.com"
	if r := e.do("POST", "/api/me/email", token, map[string]string{"current_password": testPassword, "new_email": newEmail}); r.status >= 300 {
		e.t.Fatalf("email change: %d %s", r.status, r.body)
	}
}

// emailIndexForms is the blind index of an email, computed as the server computes it, in
// the form pg_dump prints a bytea (first: lowercase hex after \x, which COPY writes as \\x)
// and in the base64 forms it would take inside JSON or a token.
func (e *testEnv) emailIndexForms(email string) []string {
	idx := e.db.DB.Keys.BlindIndex("email", []byte(keyring.NormalizeEmail(email)))
	return []string{`\x` + hex.EncodeToString(idx), base64.StdEncoding.EncodeToString(idx),
		base64.RawURLEncoding.EncodeToString(idx)}
}

// keptAfterErasure are the tables that keep rows with the user's id on purpose: the audit
// trail and the deadline log of privacy requests. They may hold no ciphertext.
var keptAfterErasure = map[string]bool{"audit_log": true, "privacy_requests": true}

// storedSecrets finds, through the catalog (so tables added later are covered), every
// ciphertext and bytea column (hashes, blind indexes, digests) of every table with the
// user's id, and returns the values in her rows in the form pg_dump prints them, each
// with the "table.column" it came from.
func storedSecrets(t *testing.T, admin *pgxpool.Pool, userID string) map[string]string {
	t.Helper()
	ctx := context.Background()
	rows, err := admin.Query(ctx, `SELECT c.relname, a.attname, a.atttypid = 'bytea'::regtype
		FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		  AND a.atttypid IN ('public.ciphertext'::regtype, 'bytea'::regtype)
		  AND EXISTS (SELECT 1 FROM pg_attribute u WHERE u.attrelid = c.oid AND NOT u.attisdropped
		              AND u.attname = CASE c.relname WHEN 'users' THEN 'id' ELSE 'user_id' END)
		ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type column struct {
		table, name string
		bytea       bool
	}
	cols, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (c column, err error) {
		return c, row.Scan(&c.table, &c.name, &c.bytea)
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range cols {
		where := c.table + "." + c.name
		if keptAfterErasure[c.table] {
			if !c.bytea {
				t.Fatalf("%s: a table kept after erasure holds ciphertext", where)
			}
			continue
		}
		owner := "user_id"
		if c.table == "users" {
			owner = "id"
		}
		q := fmt.Sprintf(`SELECT %[1]s FROM %[2]s WHERE %[3]s = $1 AND %[1]s IS NOT NULL`,
			pgx.Identifier{c.name}.Sanitize(), pgx.Identifier{c.table}.Sanitize(), owner)
		if c.bytea {
			values, err := queryColumn[[]byte](admin, q, userID)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			for _, v := range values {
				if len(v) >= 16 { // shorter would be no secret, and could match by chance
					out[`\x`+hex.EncodeToString(v)] = where
				}
			}
			continue
		}
		values, err := queryColumn[string](admin, q, userID)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		for _, v := range values {
			out[v] = where
		}
	}
	for _, want := range []string{"users.email", "users.full_name", "users.date_of_birth", "users.mfa_secret",
		"users.email_index", "account_tokens.new_email", "test_results.value", "health_records.content",
		"files.name", "file_chunks.data", "refresh_tokens.token_hash", "mfa_recovery_codes.code_hash",
		"change_history.previous"} {
		found := false
		for _, where := range out {
			found = found || where == want
		}
		if !found {
			t.Fatalf("no value of %s was collected for the user", want)
		}
	}
	return out
}

func queryColumn[T any](pool *pgxpool.Pool, q string, args ...any) ([]T, error) {
	rows, err := pool.Query(context.Background(), q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[T])
}

// mustPGDump finds pg_dump beside the PostgreSQL server binaries the tests run on.
func mustPGDump(t *testing.T) string {
	t.Helper()
	dir, err := devdb.FindBinDir()
	if err != nil {
		t.Fatalf("pg_dump is needed to prove an erasure: %v", err)
	}
	p := filepath.Join(dir, "pg_dump")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("pg_dump is needed to prove an erasure and is not in %s (it comes with the PostgreSQL server package, postgresql): %v", dir, err)
	}
	return p
}

// mustDump is a data-only dump of the whole database, as pg_dump prints it.
func mustDump(t *testing.T, pgDump, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, pgDump, "--data-only", "--no-password", "--dbname="+url)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pg_dump: %v: %s", err, stderr.String())
	}
	if !strings.Contains(out.String(), "COPY public.users ") {
		t.Fatalf("pg_dump printed no users table: %.300s", out.String())
	}
	return out.String()
}

package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

// mustAuditRows writes n rows for userID ("" for anonymous), one second apart from base.
func mustAuditRows(t *testing.T, store *postgres.AuditStore, userID, action string, status int, base time.Time, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e := &phr.AuditEvent{Timestamp: base.Add(time.Duration(i) * time.Second), UserID: userID, Action: action,
			IPAddress: "192.0.2.7", StatusCode: status, ResponseTimeMS: 3, UserAgent: "test", RequestID: fmt.Sprintf("req%d", i)}
		if err := store.WriteAuditEvent(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// mustAdmin makes the user of ctx an admin (role set by the owner, as `users create-admin`
// does), with MFA turned on through the service when mfa is set.
func mustAdmin(t *testing.T, d *pgtest.Database, ctx context.Context, mfa bool) {
	t.Helper()
	owner := pgtest.MustPool(t, d.OwnerURL, 1)
	tx, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	id := phr.UserIDFromContext(ctx)
	if _, err := tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", id); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE users SET role = 'admin' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if mfa {
		if err := d.DB.BeginMFAEnrolment(ctx, make([]byte, 20)); err != nil {
			t.Fatal(err)
		}
		if err := d.DB.EnableMFA(ctx, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAccessHistoryHoldsOnlyOwnRows(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ana := MustUser(t, d.DB, "ana@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	store := &postgres.AuditStore{Pool: d.DB.Pool}
	base := time.Now().UTC().Truncate(time.Second) // partitions start at this month
	mustAuditRows(t, store, phr.UserIDFromContext(ana), "GET /api/test-results", 200, base, 7)
	mustAuditRows(t, store, phr.UserIDFromContext(bob), "GET /api/test-results", 200, base, 3)
	mustAuditRows(t, store, "", "POST /api/auth/token", 401, base, 2)

	for _, tc := range []struct {
		name string
		ctx  context.Context
		want int
	}{{"ana", ana, 7}, {"bob", bob, 3}} {
		seen := map[int64]bool{}
		cursor := ""
		var last time.Time
		for page := 0; ; page++ {
			items, next, err := d.DB.FindAccessHistory(tc.ctx, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				if it.UserID != phr.UserIDFromContext(tc.ctx) {
					t.Fatalf("%s sees a row of %q", tc.name, it.UserID)
				}
				if seen[it.ID] {
					t.Fatalf("%s: row %d on two pages", tc.name, it.ID)
				}
				if !last.IsZero() && it.Timestamp.After(last) {
					t.Fatalf("%s: not newest first", tc.name)
				}
				seen[it.ID], last = true, it.Timestamp
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if got, want := len(seen), tc.want; got != want {
			t.Fatalf("%s: %d rows, want %d", tc.name, got, want)
		}
	}
	if _, _, err := d.DB.FindAccessHistory(ana, "not a cursor", 0); phr.ErrorCode(err) != phr.EINVALID {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := d.DB.FindAccessHistory(context.Background(), "", 0); phr.ErrorCode(err) != phr.EUNAUTHORIZED {
		t.Fatalf("no user: %v", err)
	}
}

func TestAuditSearchOnlyForAdminsWithMFA(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ana := MustUser(t, d.DB, "ana@example.com")
	admin := MustUser(t, d.DB, "admin@example.com")
	store := &postgres.AuditStore{Pool: d.DB.Pool}
	base := time.Now().UTC().Truncate(time.Second) // partitions start at this month
	anaID := phr.UserIDFromContext(ana)
	mustAuditRows(t, store, anaID, "GET /api/test-results", 200, base, 5)
	mustAuditRows(t, store, anaID, "EVENT account.locked", 0, base.Add(time.Hour), 1)
	mustAuditRows(t, store, "", "POST /api/auth/token", 401, base, 4)

	// Attack: a plain user searches the trail; the database function refuses them.
	if _, _, err := d.DB.FindAuditRecords(ana, phr.AuditFilter{}); phr.ErrorCode(err) != phr.EFORBIDDEN {
		t.Fatalf("plain user: %v, want forbidden", err)
	}
	mustAdmin(t, d, admin, false)
	if _, _, err := d.DB.FindAuditRecords(admin, phr.AuditFilter{}); phr.ErrorCode(err) != phr.EFORBIDDEN {
		t.Fatalf("admin without MFA: %v, want forbidden", err)
	}
	mustAdmin(t, d, admin, true)

	for _, tc := range []struct {
		name string
		f    phr.AuditFilter
		want int
	}{
		{"all", phr.AuditFilter{}, 10},
		{"user", phr.AuditFilter{UserID: anaID}, 6},
		{"action", phr.AuditFilter{Action: "EVENT account.locked"}, 1},
		{"status", phr.AuditFilter{StatusCode: 401}, 4},
		{"range", phr.AuditFilter{From: base.Add(time.Second), To: base.Add(3 * time.Second)}, 4},
		{"nothing", phr.AuditFilter{UserID: phr.UserIDFromContext(admin)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[int64]bool{}
			f := tc.f
			f.Limit = 3
			for {
				items, next, err := d.DB.FindAuditRecords(admin, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range items {
					if seen[it.ID] {
						t.Fatalf("row %d on two pages", it.ID)
					}
					seen[it.ID] = true
				}
				if next == "" {
					break
				}
				f.Cursor = next
			}
			if got, want := len(seen), tc.want; got != want {
				t.Fatalf("%d rows, want %d", got, want)
			}
		})
	}
	for _, f := range []phr.AuditFilter{
		{UserID: "nope"}, {StatusCode: 42}, {Cursor: "!!"}, {Limit: 1000},
		{From: base, To: base.Add(-time.Second)},
	} {
		if _, _, err := d.DB.FindAuditRecords(admin, f); phr.ErrorCode(err) != phr.EINVALID {
			t.Fatalf("filter %+v: %v, want invalid", f, err)
		}
	}
}

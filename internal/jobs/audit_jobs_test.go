package jobs_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/jobs"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

func TestAuditRetentionDropsOnlyExpiredMonths(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	owner := pgtest.MustPool(t, d.OwnerURL, 1)
	// Two months seven years back.
	var made int
	if err := owner.QueryRow(ctx, `SELECT audit_ensure_partitions(now() - interval '7 years', 1)`).Scan(&made); err != nil || made != 2 {
		t.Fatalf("old partitions: %d, %v", made, err)
	}
	old := "audit_log_" + time.Now().UTC().AddDate(-7, 0, 0).Format("2006_01")
	// Shorter than six years is refused, here and in the database.
	if _, err := jobs.EnforceAuditRetention(ctx, d.DB.Pool, 5); err == nil {
		t.Fatal("a five-year retention was accepted")
	}
	if _, err := d.DB.Pool.Exec(ctx, `SELECT audit_drop_expired(interval '5 years 11 months')`); err == nil {
		t.Fatal("the database accepted a retention under six years")
	}
	// Eight years keeps them.
	dropped, err := jobs.EnforceAuditRetention(ctx, d.DB.Pool, 8)
	if err != nil || len(dropped) != 0 {
		t.Fatalf("8-year retention dropped %v, %v", dropped, err)
	}
	dropped, err = jobs.EnforceAuditRetention(ctx, d.DB.Pool, 6)
	if err != nil || len(dropped) != 2 || !slices.Contains(dropped, old) {
		t.Fatalf("6-year retention dropped %v, %v; want the two months of seven years ago", dropped, err)
	}
	var left int
	owner.QueryRow(ctx, `SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_log'::regclass AND c.relname = 'audit_log_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')`).Scan(&left)
	if left != 1 {
		t.Fatal("this month's partition was dropped")
	}
	// A year ahead exists.
	var ahead int
	owner.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname = 'audit_log_' || to_char((now() + interval '12 months') AT TIME ZONE 'UTC', 'YYYY_MM')`).Scan(&ahead)
	if ahead != 1 {
		t.Fatal("no partition a year ahead")
	}
}

func TestAuditRulesJobPostsAlertsWithoutPHI(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	var mu sync.Mutex
	var got []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if r.Method != http.MethodPost || json.Unmarshal(b, &m) != nil {
			t.Errorf("webhook got %s %q", r.Method, b)
		}
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer hook.Close()
	user := uuid.NewString()
	store := &postgres.AuditStore{Pool: d.DB.Pool}
	if err := store.WriteAuditEvent(ctx, &phr.AuditEvent{Timestamp: time.Now(), UserID: user, IPAddress: "192.0.2.4",
		Action: "EVENT refresh_token.reused", RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	rules := audit.DefaultRules()
	var logs strings.Builder
	opts := jobs.Options{DB: d.DB, Rules: &rules, AlertWebhookURL: hook.URL, Logger: newTestLogger(&logs)}
	alerts, err := jobs.RunAuditRules(ctx, opts, time.Now())
	if err != nil || len(alerts) != 1 {
		t.Fatalf("alerts %+v, %v", alerts, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0]["rule"] != "refresh_token_reuse" || got[0]["subject"] != user {
		t.Fatalf("webhook got %v", got)
	}
	if !strings.Contains(logs.String(), `"alert"`) {
		t.Fatalf("alert not logged: %s", logs.String())
	}
	// A dead webhook is logged, not fatal.
	if err := store.WriteAuditEvent(ctx, &phr.AuditEvent{Timestamp: time.Now(), UserID: user, Action: "EVENT admin.user_locked", RequestID: "r2"}); err != nil {
		t.Fatal(err)
	}
	opts.AlertWebhookURL = "http://127.0.0.1:1/hook"
	if alerts, err := jobs.RunAuditRules(ctx, opts, time.Now()); err != nil || len(alerts) != 1 {
		t.Fatalf("with a dead webhook: %+v, %v", alerts, err)
	}
}

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

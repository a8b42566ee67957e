package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Rules are the thresholds of the rules that watch the trail (plan §6.2). A rule fires at
// most once per subject per window; windows are aligned (to 2001-01-01 UTC), so two bursts
// either side of a window's edge count separately.
type Rules struct {
	// Window is the width of a window, 1m to 24h.
	Window time.Duration
	// BulkRecords: an alert when one user touches more distinct records in a window.
	BulkRecords int
	// Enumeration: an alert when one user or address gets 404 for more distinct ids.
	Enumeration int
	// StuffingAccounts and StuffingRequests: an alert when one address fails to sign in
	// against more distinct accounts, or more times, in a window.
	StuffingAccounts int
	StuffingRequests int
	// Hours, when set, are the office hours (UTC, "HH:MM-HH:MM"; a range may wrap midnight):
	// a signed-in request outside them raises an alert.
	Hours *Hours
}

// Hours is a range of times of day, UTC. From == To would mean "never inside": refused.
type Hours struct {
	From, To time.Duration // since midnight
}

// ParseHours reads "06:00-22:00".
func ParseHours(s string) (*Hours, error) {
	var h1, m1, h2, m2 int
	if n, err := fmt.Sscanf(s, "%d:%d-%d:%d", &h1, &m1, &h2, &m2); err != nil || n != 4 ||
		h1 < 0 || h1 > 23 || h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59 || (h2 == 24 && m2 != 0) {
		return nil, fmt.Errorf("audit: hours must be HH:MM-HH:MM, such as 06:00-22:00")
	}
	h := &Hours{From: time.Duration(h1)*time.Hour + time.Duration(m1)*time.Minute,
		To: time.Duration(h2)*time.Hour + time.Duration(m2)*time.Minute}
	if h.From == h.To {
		return nil, fmt.Errorf("audit: hours %q are empty", s)
	}
	return h, nil
}

func (h *Hours) sql() (from, to *string) {
	if h == nil {
		return nil, nil
	}
	f := func(d time.Duration) *string {
		if d >= 24*time.Hour {
			s := "24:00:00"
			return &s
		}
		s := fmt.Sprintf("%02d:%02d:00", int(d/time.Hour), int(d%time.Hour/time.Minute))
		return &s
	}
	return f(h.From), f(h.To)
}

// DefaultRules are the thresholds when nothing is configured.
func DefaultRules() Rules {
	return Rules{Window: 10 * time.Minute, BulkRecords: 100, Enumeration: 20, StuffingAccounts: 5, StuffingRequests: 50}
}

// Alert is one rule that fired. Subject is a user id or a client address; Detail is the
// rule's counts. Neither holds PHI.
type Alert struct {
	ID        int64     `json:"id"`
	Rule      string    `json:"rule"`
	Subject   string    `json:"subject"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int       `json:"count"`
	Detail    string    `json:"detail"`
}

// LogValue keeps the alert's fields together in the log.
func (a Alert) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", a.ID), slog.String("rule", a.Rule), slog.String("subject", a.Subject),
		slog.Time("first_seen", a.FirstSeen), slog.Time("last_seen", a.LastSeen), slog.Int("count", a.Count),
		slog.String("detail", a.Detail))
}

// EvaluateRules runs the rules over the windows from the one holding since on, stores the
// alerts not raised before and returns them. The server role may call it: the rules run in
// audit_evaluate_rules, which reads every user's rows and returns only alerts.
func EvaluateRules(ctx context.Context, pool *pgxpool.Pool, since time.Time, r Rules) ([]Alert, error) {
	if r.Window < time.Minute || r.Window > 24*time.Hour {
		return nil, fmt.Errorf("audit: rules window %s out of 1m..24h", r.Window)
	}
	from, to := r.Hours.sql()
	rows, err := pool.Query(ctx, `SELECT id, rule, subject, first_seen, last_seen, count, detail
		FROM audit_evaluate_rules($1, make_interval(secs => $2), $3, $4, $5, $6, $7::time, $8::time) ORDER BY id`,
		since, r.Window.Seconds(), r.BulkRecords, r.Enumeration, r.StuffingAccounts, r.StuffingRequests, from, to)
	if err != nil {
		return nil, fmt.Errorf("audit: evaluate rules: %w", err)
	}
	alerts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Alert, error) {
		var a Alert
		err := row.Scan(&a.ID, &a.Rule, &a.Subject, &a.FirstSeen, &a.LastSeen, &a.Count, &a.Detail)
		a.FirstSeen, a.LastSeen = a.FirstSeen.UTC(), a.LastSeen.UTC()
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: evaluate rules: %w", err)
	}
	return alerts, nil
}

// Notifier tells operators of alerts: the log (Warn, key "alert") and, when URL is set, a
// webhook that receives each alert as JSON in a POST (2 s timeout). A webhook failure is
// logged, never returned: the alert is stored whatever happens to its notice.
type Notifier struct {
	Logger *slog.Logger
	URL    string
	Client *http.Client // nil: a client with a 2 s timeout
}

// Notify logs and posts each alert.
func (n *Notifier) Notify(ctx context.Context, alerts []Alert) {
	logger := n.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	client := n.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	for _, a := range alerts {
		logger.Warn("audit alert", "alert", a)
		if n.URL == "" {
			continue
		}
		if err := n.post(ctx, client, a); err != nil {
			logger.Error("audit alert webhook failed", "alert_id", a.ID, "err", err.Error())
		}
	}
}

func (n *Notifier) post(ctx context.Context, client *http.Client, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vitalnexa-audit")
	resp, err := client.Do(req)
	if err != nil {
		// The URL can carry a token: drop it from the message.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook request failed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

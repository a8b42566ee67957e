package postgres

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// RateLimiter keeps fixed-window counters in the rate_limits table, so every serve process
// sees the same counts. Buckets are stored as keyed hashes of their keys (which name client
// addresses and accounts).
type RateLimiter struct {
	Pool *pgxpool.Pool
	Keys *keyring.Keyring
	Now  func() time.Time
}

var _ phr.RateLimiter = (*RateLimiter)(nil)

// Allow counts one hit in key's current window.
func (l *RateLimiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	bucket := l.Keys.BlindIndex("rate_limit", []byte(key))
	var hits int
	var start time.Time
	err := l.Pool.QueryRow(ctx, `INSERT INTO rate_limits AS r (bucket, window_start, hits) VALUES ($1, $2, 1)
		ON CONFLICT (bucket) DO UPDATE SET
			hits = CASE WHEN r.window_start <= $2::timestamptz - $3::interval THEN 1 ELSE r.hits + 1 END,
			window_start = CASE WHEN r.window_start <= $2::timestamptz - $3::interval THEN $2 ELSE r.window_start END
		RETURNING hits, window_start`, bucket, now, window).Scan(&hits, &start)
	if err != nil {
		return false, 0, FormatError(err)
	}
	// Now and then, sweep windows that ended long ago.
	if rand.IntN(200) == 0 {
		_, _ = l.Pool.Exec(ctx, `DELETE FROM rate_limits WHERE window_start < $1`, now.Add(-24*time.Hour))
	}
	if hits <= limit {
		return true, 0, nil
	}
	retry := start.Add(window).Sub(now)
	if retry < time.Second {
		retry = time.Second
	}
	return false, retry, nil
}

// Reset forgets key's window.
func (l *RateLimiter) Reset(ctx context.Context, key string) error {
	_, err := l.Pool.Exec(ctx, `DELETE FROM rate_limits WHERE bucket = $1`, l.Keys.BlindIndex("rate_limit", []byte(key)))
	return FormatError(err)
}

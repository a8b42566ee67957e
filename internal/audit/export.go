package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Row is one audit row as exported: the fields of plan §6.1, the request id and its place in
// the chain. It holds no PHI.
type Row struct {
	ID             int64     `json:"id"`
	Seq            int64     `json:"seq"`
	Timestamp      time.Time `json:"timestamp"`
	UserID         *string   `json:"user_id"`
	Action         string    `json:"action"`
	IPAddress      *string   `json:"ip_address"`
	StatusCode     int       `json:"status_code"`
	ResponseTimeMS int       `json:"response_time_ms"`
	ResourceID     *string   `json:"resource_id"`
	UserAgent      string    `json:"user_agent"`
	RequestID      string    `json:"request_id"`
	PrevHash       string    `json:"prev_hash"`
	Hash           string    `json:"hash"`
}

// Export calls emit for every row with from <= timestamp < to, in chain order, streaming.
func Export(ctx context.Context, pool *pgxpool.Pool, from, to time.Time, emit func(Row) error) error {
	rows, err := pool.Query(ctx, `SELECT id, seq, "timestamp", user_id::text, action, host(ip_address), status_code,
			response_time_ms, resource_id, user_agent, request_id, prev_hash, hash
		FROM audit_log WHERE "timestamp" >= $1 AND "timestamp" < $2 ORDER BY seq`, from, to)
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Row
		var prev, hash []byte
		if err := rows.Scan(&r.ID, &r.Seq, &r.Timestamp, &r.UserID, &r.Action, &r.IPAddress, &r.StatusCode,
			&r.ResponseTimeMS, &r.ResourceID, &r.UserAgent, &r.RequestID, &prev, &hash); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		r.Timestamp = r.Timestamp.UTC()
		r.PrevHash, r.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
		if err := emit(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

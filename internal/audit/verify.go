package audit

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Result is what Verify found.
type Result struct {
	Rows int64 // rows checked
	// FirstBad is the id of the first row whose place in the chain is wrong: edited (its
	// hash does not cover its content), after a deletion (its sequence number or previous
	// hash does not follow the row before), or moved; 0 when the chain is intact.
	FirstBad int64
	Reason   string
}

// OK reports an intact chain.
func (r Result) OK() bool { return r.FirstBad == 0 && r.Reason == "" }

// Verify walks the whole chain in order. It needs a role that reads every row (the owner).
// The hashes are recomputed by the database's own audit_row_content, the function that
// made them.
func Verify(ctx context.Context, pool *pgxpool.Pool) (Result, error) {
	var res Result
	// The kept chain starts after the last row retention removed.
	var anchorSeq int64
	var anchorHash []byte
	if err := pool.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_anchor`).Scan(&anchorSeq, &anchorHash); err != nil {
		return res, fmt.Errorf("audit: verify: %w", err)
	}
	rows, err := pool.Query(ctx, `SELECT id, seq, prev_hash, hash,
			sha256(prev_hash || convert_to(audit_row_content(a), 'UTF8'))
		FROM audit_log a ORDER BY seq, id`)
	if err != nil {
		return res, fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	expect, prev := anchorSeq+1, anchorHash
	for rows.Next() {
		var id, seq int64
		var prevHash, hash, recomputed []byte
		if err := rows.Scan(&id, &seq, &prevHash, &hash, &recomputed); err != nil {
			return res, fmt.Errorf("audit: verify: %w", err)
		}
		res.Rows++
		bad := ""
		switch {
		case seq != expect:
			bad = fmt.Sprintf("sequence %d where %d was due: rows before it were deleted or moved", seq, expect)
		case !bytes.Equal(prevHash, prev):
			bad = "it does not follow the row before it: a row was deleted, moved or edited"
		case !bytes.Equal(hash, recomputed):
			bad = "its content does not match its hash: the row was edited"
		}
		if bad != "" {
			res.FirstBad, res.Reason = id, bad
			return res, nil
		}
		expect, prev = seq+1, hash
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("audit: verify: %w", err)
	}
	// The tail: the head must name the last row, or rows were cut from the end.
	var headSeq int64
	var headHash []byte
	if err := pool.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_head`).Scan(&headSeq, &headHash); err != nil {
		return res, fmt.Errorf("audit: verify: %w", err)
	}
	if headSeq != expect-1 || !bytes.Equal(headHash, prev) {
		res.Reason = fmt.Sprintf("the chain ends at sequence %d but its head says %d: rows were cut from the end", expect-1, headSeq)
	}
	return res, nil
}

package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"gocloud.dev/blob"
)

// The copy off the database (plan §6.2): the rows of the trail, in chain order, as signed
// segments in a blob store. A segment is JSON lines: one Row per line, then a line
// {"trailer": Trailer}, then a line {"hmac_sha256": hex} that signs every byte before it.
// Segments are named by their first and last sequence numbers, zero-padded, so that the
// names sort in chain order.

// SegmentPrefix starts the name of every segment object.
const SegmentPrefix = "audit-segment-"

// copyLock is the advisory lock that keeps two copiers from writing overlapping segments.
const copyLock = 7406213

// Trailer closes a segment.
type Trailer struct {
	FirstSeq  int64     `json:"first_seq"`
	LastSeq   int64     `json:"last_seq"`
	PrevHash  string    `json:"prev_hash"` // the hash of the row before the first, hex
	LastHash  string    `json:"last_hash"`
	Rows      int       `json:"rows"`
	CreatedAt time.Time `json:"created_at"`
}

// SegmentKey is the key segments are signed with: HMAC-SHA256 under the blind-index key's
// own derived key for the purpose "audit_copy", so neither the master key nor any data key
// signs anything, and it survives data-key rotation.
func SegmentKey(k *keyring.Keyring) []byte {
	return k.BlindIndex("audit_copy", []byte("vitalnexa audit segment signing key v1"))
}

// CopyResult is what Copy did.
type CopyResult struct {
	Segments int
	Rows     int
	LastSeq  int64
}

// Copy writes the rows not yet copied to bucket as segments of at most maxRows rows and
// records each in audit_copies. The server role may call it (the rows come from
// audit_copy_rows). A segment is written before it is recorded, so a crash between the two
// rewrites the same segment next time. Concurrent copiers take turns.
func Copy(ctx context.Context, pool *pgxpool.Pool, bucket *blob.Bucket, key []byte, maxRows int) (CopyResult, error) {
	var res CopyResult
	if len(key) < 32 {
		return res, errors.New("audit: copy: signing key too short")
	}
	if maxRows < 1 {
		maxRows = 20000
	}
	for {
		n, last, err := copyOne(ctx, pool, bucket, key, maxRows)
		if err != nil {
			return res, err
		}
		if n == 0 {
			return res, nil
		}
		res.Segments++
		res.Rows += n
		res.LastSeq = last
		if n < maxRows {
			return res, nil
		}
	}
}

func copyOne(ctx context.Context, pool *pgxpool.Pool, bucket *blob.Bucket, key []byte, maxRows int) (int, int64, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("audit: copy: %w", err)
	}
	defer tx.Rollback(ctx)
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, copyLock).Scan(&locked); err != nil {
		return 0, 0, fmt.Errorf("audit: copy: %w", err)
	}
	if !locked {
		return 0, 0, nil // another copier is at it
	}
	var lastSeq int64
	var lastHash []byte
	err = tx.QueryRow(ctx, `SELECT last_seq, last_hash FROM audit_copies ORDER BY last_seq DESC LIMIT 1`).Scan(&lastSeq, &lastHash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("audit: copy: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT id, seq, "timestamp", user_id, action, ip_address, status_code, response_time_ms,
		resource_id, user_agent, request_id, prev_hash, hash FROM audit_copy_rows($1, $2)`, lastSeq, maxRows)
	if err != nil {
		return 0, 0, fmt.Errorf("audit: copy: %w", err)
	}
	batch, err := pgx.CollectRows(rows, scanRow)
	if err != nil {
		return 0, 0, fmt.Errorf("audit: copy: %w", err)
	}
	if len(batch) == 0 {
		return 0, 0, nil
	}
	// The trail must go on from where the copy stopped: anything else means rows were
	// removed or rewritten since.
	if lastSeq > 0 && (batch[0].Seq != lastSeq+1 || batch[0].PrevHash != hex.EncodeToString(lastHash)) {
		return 0, 0, fmt.Errorf("audit: copy: row %d (seq %d) does not follow the last copied row (seq %d): the trail changed after it was copied",
			batch[0].ID, batch[0].Seq, lastSeq)
	}
	data, tr, err := encodeSegment(batch, key)
	if err != nil {
		return 0, 0, err
	}
	name := SegmentName(tr.FirstSeq, tr.LastSeq)
	if err := bucket.WriteAll(ctx, name, data, &blob.WriterOptions{ContentType: "application/x-ndjson"}); err != nil {
		return 0, 0, fmt.Errorf("audit: copy: write %s: %w", name, err)
	}
	h, _ := hex.DecodeString(tr.LastHash)
	if _, err := tx.Exec(ctx, `INSERT INTO audit_copies (last_seq, first_seq, last_hash, object) VALUES ($1, $2, $3, $4)`,
		tr.LastSeq, tr.FirstSeq, h, name); err != nil {
		return 0, 0, fmt.Errorf("audit: copy: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("audit: copy: %w", err)
	}
	return len(batch), tr.LastSeq, nil
}

// SegmentName is the object name of the segment of rows first..last.
func SegmentName(first, last int64) string {
	return fmt.Sprintf("%s%020d-%020d.jsonl", SegmentPrefix, first, last)
}

func scanRow(row pgx.CollectableRow) (Row, error) {
	var r Row
	var prev, hash []byte
	if err := row.Scan(&r.ID, &r.Seq, &r.Timestamp, &r.UserID, &r.Action, &r.IPAddress, &r.StatusCode,
		&r.ResponseTimeMS, &r.ResourceID, &r.UserAgent, &r.RequestID, &prev, &hash); err != nil {
		return r, err
	}
	r.Timestamp = r.Timestamp.UTC()
	r.PrevHash, r.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
	return r, nil
}

type trailerLine struct {
	Trailer *Trailer `json:"trailer"`
}

type signatureLine struct {
	HMACSHA256 string `json:"hmac_sha256"`
}

func encodeSegment(rows []Row, key []byte) ([]byte, Trailer, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return nil, Trailer{}, fmt.Errorf("audit: copy: %w", err)
		}
	}
	tr := Trailer{FirstSeq: rows[0].Seq, LastSeq: rows[len(rows)-1].Seq, PrevHash: rows[0].PrevHash,
		LastHash: rows[len(rows)-1].Hash, Rows: len(rows), CreatedAt: time.Now().UTC()}
	if err := enc.Encode(trailerLine{&tr}); err != nil {
		return nil, tr, fmt.Errorf("audit: copy: %w", err)
	}
	if err := enc.Encode(signatureLine{hex.EncodeToString(sign(key, buf.Bytes()))}); err != nil {
		return nil, tr, fmt.Errorf("audit: copy: %w", err)
	}
	return buf.Bytes(), tr, nil
}

func sign(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// CopyReport is what VerifyCopy found.
type CopyReport struct {
	Segments int
	Rows     int64
	// Problems name the segment or the row and what is wrong; at most maxProblems.
	Problems []string
}

// OK reports a copy that is intact and agrees with the table.
func (r CopyReport) OK() bool { return len(r.Problems) == 0 }

const maxProblems = 100

func (r *CopyReport) problem(format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// VerifyCopy checks the copy in bucket: every segment's signature under key, that the
// segments and the rows in them chain (each segment starts where the one before ended),
// and that every copied row still equals its row in the table (a row edited in the table
// after it was copied, even with its hash and every later one recomputed, is named). Rows
// missing from the table that are older than both six years and the oldest row left are
// taken as dropped by retention. It needs a
// role that reads every row (the owner).
func VerifyCopy(ctx context.Context, owner *pgxpool.Pool, bucket *blob.Bucket, key []byte) (CopyReport, error) {
	var rep CopyReport
	var names []string
	it := bucket.List(&blob.ListOptions{Prefix: SegmentPrefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rep, fmt.Errorf("audit: verify copy: list: %w", err)
		}
		if !obj.IsDir && strings.HasSuffix(obj.Key, ".jsonl") {
			names = append(names, obj.Key)
		}
	}
	sort.Strings(names)
	// Retention drops only whole months older than six years, and only from the front.
	oldest := time.Now().AddDate(-6, 0, 0)
	var first *time.Time
	if err := owner.QueryRow(ctx, `SELECT min("timestamp") FROM audit_log`).Scan(&first); err != nil {
		return rep, fmt.Errorf("audit: verify copy: %w", err)
	}
	if first != nil && first.Before(oldest) {
		oldest = *first
	}
	var prev *Trailer
	prevName := ""
	for _, name := range names {
		rep.Segments++
		data, err := bucket.ReadAll(ctx, name)
		if err != nil {
			return rep, fmt.Errorf("audit: verify copy: read %s: %w", name, err)
		}
		rows, tr, err := decodeSegment(data, key)
		if err != nil {
			rep.problem("segment %s: %v", name, err)
			prev = nil
			continue
		}
		rep.Rows += int64(len(rows))
		if prev != nil && (tr.FirstSeq != prev.LastSeq+1 || tr.PrevHash != prev.LastHash) {
			rep.problem("segment %s does not follow segment %s (sequence %d after %d): a segment is missing or was replaced",
				name, prevName, tr.FirstSeq, prev.LastSeq)
		}
		if err := compareWithTable(ctx, owner, name, rows, tr, oldest, &rep); err != nil {
			return rep, err
		}
		prev, prevName = &tr, name
	}
	return rep, nil
}

// decodeSegment checks the signature, then the segment's own chain, and returns its rows.
func decodeSegment(data, key []byte) ([]Row, Trailer, error) {
	var tr Trailer
	if len(data) < 2 || data[len(data)-1] != '\n' {
		return nil, tr, errors.New("truncated")
	}
	cut := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	body, sigLine := data[:cut], data[cut:]
	var sig signatureLine
	_ = json.Unmarshal(sigLine, &sig)
	got, err := hex.DecodeString(sig.HMACSHA256)
	if err != nil || len(got) == 0 || !hmac.Equal(got, sign(key, body)) {
		return nil, tr, errors.New("the signature does not match: the segment was altered, or signed with another key")
	}
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	var tl trailerLine
	if err := json.Unmarshal(lines[len(lines)-1], &tl); err != nil || tl.Trailer == nil {
		return nil, tr, errors.New("no trailer")
	}
	tr = *tl.Trailer
	rows := make([]Row, 0, len(lines)-1)
	for _, l := range lines[:len(lines)-1] {
		var r Row
		if err := json.Unmarshal(l, &r); err != nil {
			return nil, tr, fmt.Errorf("a row does not parse: %v", err)
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 || len(rows) != tr.Rows || rows[0].Seq != tr.FirstSeq || rows[len(rows)-1].Seq != tr.LastSeq ||
		rows[0].PrevHash != tr.PrevHash || rows[len(rows)-1].Hash != tr.LastHash {
		return nil, tr, errors.New("the trailer does not match the rows")
	}
	for i := 1; i < len(rows); i++ {
		if rows[i].Seq != rows[i-1].Seq+1 || rows[i].PrevHash != rows[i-1].Hash {
			return nil, tr, fmt.Errorf("row seq %d does not follow the row before it", rows[i].Seq)
		}
	}
	return rows, tr, nil
}

func compareWithTable(ctx context.Context, owner *pgxpool.Pool, name string, copied []Row, tr Trailer, oldest time.Time, rep *CopyReport) error {
	q, err := owner.Query(ctx, `SELECT id, seq, "timestamp", user_id::text, action, host(ip_address), status_code,
			response_time_ms, resource_id, user_agent, request_id, prev_hash, hash
		FROM audit_log WHERE seq BETWEEN $1 AND $2 ORDER BY seq, id`, tr.FirstSeq, tr.LastSeq)
	if err != nil {
		return fmt.Errorf("audit: verify copy: %w", err)
	}
	table, err := pgx.CollectRows(q, scanRow)
	if err != nil {
		return fmt.Errorf("audit: verify copy: %w", err)
	}
	bySeq := make(map[int64][]Row, len(table))
	for _, r := range table {
		bySeq[r.Seq] = append(bySeq[r.Seq], r)
	}
	for _, c := range copied {
		t := bySeq[c.Seq]
		switch {
		case len(t) == 0:
			if !c.Timestamp.Before(oldest) {
				rep.problem("row %d (seq %d) is in the copy (%s) but not in the table: it was deleted", c.ID, c.Seq, name)
			}
		case len(t) > 1:
			rep.problem("seq %d is held by %d rows in the table, one in the copy (%s): rows were added", c.Seq, len(t), name)
		case !sameRow(c, t[0]):
			rep.problem("row %d (seq %d) differs from its copy in %s: it was changed after it was copied", t[0].ID, c.Seq, name)
		}
	}
	return nil
}

func sameRow(a, b Row) bool {
	s := func(p *string) string {
		if p == nil {
			return "\x00null"
		}
		return *p
	}
	return a.ID == b.ID && a.Seq == b.Seq && a.Timestamp.Equal(b.Timestamp) && s(a.UserID) == s(b.UserID) &&
		a.Action == b.Action && s(a.IPAddress) == s(b.IPAddress) && a.StatusCode == b.StatusCode &&
		a.ResponseTimeMS == b.ResponseTimeMS && s(a.ResourceID) == s(b.ResourceID) && a.UserAgent == b.UserAgent &&
		a.RequestID == b.RequestID && a.PrevHash == b.PrevHash && a.Hash == b.Hash
}

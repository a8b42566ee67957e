package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
)

// Key version states. The newest active version is used for writes; retired versions only
// decrypt; a revoked version is kept only until the re-encryption job has moved its values,
// and then destroyed.
const (
	KeyActive  = "active"
	KeyRetired = "retired"
	KeyRevoked = "revoked"
)

// NonceBudgetWarning is the count of encryptions under one key version past which the
// service warns and asks for a rotation: a quarter of the 2^32 NIST SP 800-38D allows for
// random 96-bit nonces.
const NonceBudgetWarning = 1 << 30

// keyVersions is what the database holds, unwrapped.
type keyVersions struct {
	data    map[int][]byte
	current int
	revoked []int
	blind   []byte
}

func readKeyVersions(ctx context.Context, pool *pgxpool.Pool, w keyring.Wrapper) (*keyVersions, error) {
	rows, err := pool.Query(ctx, `SELECT purpose, version, state, wrapped_key FROM encryption_keys ORDER BY purpose, version`)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer rows.Close()
	ks := &keyVersions{data: map[int][]byte{}}
	for rows.Next() {
		var purpose, state string
		var version int
		var wrapped []byte
		if err := rows.Scan(&purpose, &version, &state, &wrapped); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		key, err := w.Unwrap(ctx, wrapped, wrapAAD(purpose, version))
		if err != nil {
			return nil, fmt.Errorf("keys: the master key does not unwrap %s key v%d (wrong master key?)", purpose, version)
		}
		switch purpose {
		case "data":
			ks.data[version] = key
			if state == KeyActive && version > ks.current {
				ks.current = version
			}
			if state == KeyRevoked {
				ks.revoked = append(ks.revoked, version)
			}
		case "blind_index":
			ks.blind = key
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if ks.current == 0 || ks.blind == nil {
		return nil, fmt.Errorf("keys: no encryption keys in the database (run `vitalnexa migrate`)")
	}
	return ks, nil
}

// ReloadKeyring brings k up to date with the database: a rotation, revocation or
// destruction made by another process takes effect here.
func ReloadKeyring(ctx context.Context, pool *pgxpool.Pool, w keyring.Wrapper, k *keyring.Keyring) error {
	ks, err := readKeyVersions(ctx, pool, w)
	if err != nil {
		return err
	}
	if err := k.Replace(ks.data, ks.current); err != nil {
		return err
	}
	k.SetRevoked(ks.revoked)
	return nil
}

// KeyStatus is one data-key version as `keys status` shows it.
type KeyStatus struct {
	Version     int
	State       string
	Current     bool
	Remaining   int64 // stored values still encrypted under it
	Encryptions int64 // encryptions made under it (nonce budget)
	CreatedAt   time.Time
}

// KeyStatuses lists every data-key version with the values it still holds.
func KeyStatuses(ctx context.Context, pool *pgxpool.Pool) ([]KeyStatus, error) {
	counts := map[int]int64{}
	rows, err := pool.Query(ctx, `SELECT version, n FROM keys_version_counts()`)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	for rows.Next() {
		var v int
		var n int64
		if err := rows.Scan(&v, &n); err != nil {
			return nil, err
		}
		counts[v] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	rows, err = pool.Query(ctx, `SELECT version, state, encryptions, created_at FROM encryption_keys WHERE purpose = 'data' ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (KeyStatus, error) {
		var s KeyStatus
		err := r.Scan(&s.Version, &s.State, &s.Encryptions, &s.CreatedAt)
		s.Remaining = counts[s.Version]
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	current := 0
	for _, s := range out {
		if s.State == KeyActive && s.Version > current {
			current = s.Version
		}
	}
	for i := range out {
		out[i].Current = out[i].Version == current
	}
	// Values under a version the table no longer holds would be unreadable: show them.
	for v, n := range counts {
		found := false
		for _, s := range out {
			found = found || s.Version == v
		}
		if !found {
			out = append(out, KeyStatus{Version: v, State: "missing", Remaining: n})
		}
	}
	return out, nil
}

// ValuesNotCurrent counts the stored values not under the write key: what re-encryption
// has left to do.
func ValuesNotCurrent(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	st, err := KeyStatuses(ctx, pool)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, s := range st {
		if !s.Current {
			n += s.Remaining
		}
	}
	return n, nil
}

// RotateKey adds a new data-key version, wrapped by w, and makes it the one used for
// writes; the versions before it are retired (they still decrypt). It returns the version.
func RotateKey(ctx context.Context, pool *pgxpool.Pool, w keyring.Wrapper) (int, error) {
	key, err := keyring.GenerateKey()
	if err != nil {
		return 0, err
	}
	var version int
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// One rotation at a time, across processes.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7406213)`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM encryption_keys WHERE purpose = 'data'`).Scan(&version); err != nil {
			return err
		}
		wrapped, err := w.Wrap(ctx, key, wrapAAD("data", version))
		if err != nil {
			return fmt.Errorf("wrap: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE encryption_keys SET state = $1, state_changed_at = now()
			WHERE purpose = 'data' AND state = $2`, KeyRetired, KeyActive); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO encryption_keys (purpose, version, state, wrapped_key) VALUES ('data', $1, $2, $3)`,
			version, KeyActive, wrapped)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("keys: rotate: %w", err)
	}
	return version, nil
}

// ErrKeyInUse is returned by DestroyKey while values remain under the version, and by
// RevokeKey for the version used for writes (rotate first).
var ErrKeyInUse = errors.New("keys: the version is still in use")

// RevokeKey marks a version compromised: it is no longer used for anything but moving its
// values to the newest version, which the caller starts at once.
func RevokeKey(ctx context.Context, pool *pgxpool.Pool, version int) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var state string
		var newest int
		err := tx.QueryRow(ctx, `SELECT state, (SELECT max(version) FROM encryption_keys WHERE purpose = 'data' AND state = 'active')
			FROM encryption_keys WHERE purpose = 'data' AND version = $1 FOR UPDATE`, version).Scan(&state, &newest)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("keys: there is no data key v%d", version)
		}
		if err != nil {
			return err
		}
		if version == newest {
			return fmt.Errorf("%w: v%d is the write key; run `vitalnexa keys rotate` first", ErrKeyInUse, version)
		}
		_, err = tx.Exec(ctx, `UPDATE encryption_keys SET state = $2, state_changed_at = now() WHERE purpose = 'data' AND version = $1`,
			version, KeyRevoked)
		return err
	})
}

// DestroyKey removes a version's wrapped key for good. It refuses while any stored value is
// still under it, and for the write version. It needs the owner role.
func DestroyKey(ctx context.Context, owner *pgxpool.Pool, version int) error {
	statuses, err := KeyStatuses(ctx, owner)
	if err != nil {
		return err
	}
	for _, s := range statuses {
		if s.Version != version {
			continue
		}
		if s.Current {
			return fmt.Errorf("%w: v%d is the write key", ErrKeyInUse, version)
		}
		if s.Remaining > 0 {
			return fmt.Errorf("%w: %d values are still encrypted under v%d; run `vitalnexa keys reencrypt` first", ErrKeyInUse, s.Remaining, version)
		}
		tag, err := owner.Exec(ctx, `DELETE FROM encryption_keys WHERE purpose = 'data' AND version = $1`, version)
		if err != nil {
			return fmt.Errorf("keys: destroy: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("keys: there is no data key v%d", version)
		}
		return nil
	}
	return fmt.Errorf("keys: there is no data key v%d", version)
}

// FlushEncryptionCounts adds the encryptions k made since the last flush to the stored
// totals, and returns the versions that have passed NonceBudgetWarning.
func FlushEncryptionCounts(ctx context.Context, pool *pgxpool.Pool, k *keyring.Keyring) (overBudget []int, err error) {
	counts := k.TakeEncryptionCounts()
	for v, n := range counts {
		var total int64
		if err := pool.QueryRow(ctx, `UPDATE encryption_keys SET encryptions = encryptions + $2
			WHERE purpose = 'data' AND version = $1 RETURNING encryptions`, v, n).Scan(&total); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			k.ReturnEncryptionCounts(counts) // the next flush stores them
			return nil, fmt.Errorf("keys: %w", err)
		}
		delete(counts, v)
		if total >= NonceBudgetWarning {
			overBudget = append(overBudget, v)
		}
	}
	return overBudget, nil
}

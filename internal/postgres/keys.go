package postgres

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
)

// wrapAAD binds a wrapped key to its purpose and version: a wrapped key copied into
// another row does not unwrap.
func wrapAAD(purpose string, version int) []byte {
	return fmt.Appendf(nil, "vitalnexa/encryption_keys/%s/%d", purpose, version)
}

// EnsureKeys creates the first data key and the blind-index key when there are none,
// wrapped by the master key. It runs as the owner (the server role may only read keys).
func EnsureKeys(ctx context.Context, owner *pgxpool.Pool, w keyring.Wrapper) error {
	for _, purpose := range []string{"data", "blind_index"} {
		var n int
		if err := owner.QueryRow(ctx, "SELECT count(*) FROM encryption_keys WHERE purpose = $1", purpose).Scan(&n); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		if n > 0 {
			continue
		}
		key, err := keyring.GenerateKey()
		if err != nil {
			return err
		}
		wrapped, err := w.Wrap(ctx, key, wrapAAD(purpose, 1))
		if err != nil {
			return fmt.Errorf("keys: wrap: %w", err)
		}
		if _, err := owner.Exec(ctx, `INSERT INTO encryption_keys (purpose, version, wrapped_key)
			VALUES ($1, 1, $2) ON CONFLICT DO NOTHING`, purpose, wrapped); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
	}
	return nil
}

// LoadKeyring unwraps every data-key version still in the database (revoked ones too, until
// the re-encryption job has moved their values and they are destroyed) and the blind-index
// key. The newest active data key is the one used for writes. It fails when the master key
// does not unwrap a stored key, so a server with the wrong master key refuses to start
// rather than write unreadable data.
func LoadKeyring(ctx context.Context, pool *pgxpool.Pool, w keyring.Wrapper) (*keyring.Keyring, error) {
	ks, err := readKeyVersions(ctx, pool, w)
	if err != nil {
		return nil, err
	}
	k, err := keyring.New(ks.data, ks.current, ks.blind)
	if err != nil {
		return nil, err
	}
	k.SetRevoked(ks.revoked)
	return k, nil
}

// RewrapKeys moves every stored key — data keys of every version and state, revoked ones
// included, and the blind-index key — from the master key from to the master key to, and
// returns how many it rewrapped. The keys themselves do not change, so no encrypted value
// is touched: only encryption_keys.wrapped_key is written, in one transaction as the owner.
// Every key is unwrapped with from, wrapped with to and checked to unwrap with to before
// the first row is written; if any step fails for any key, nothing changes. A second run
// with the same arguments fails (the keys are no longer wrapped by from) and says so.
//
// The rewrap holds the rotation lock and blocks writes to encryption_keys until it
// commits, so no rotation interleaves; but a process still running with the old master key
// that rotates afterwards would store a key wrapped by the old one. Stop the servers (or
// their scheduled rotation) for the change, and restart them with the new master key.
func RewrapKeys(ctx context.Context, owner *pgxpool.Pool, from, to keyring.Wrapper) (int, error) {
	tx, err := owner.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("keys: rewrap: %w", err)
	}
	defer tx.Rollback(ctx)
	// 7406213 is the lock RotateKey takes: one rotation or rewrap at a time.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7406213)`); err != nil {
		return 0, fmt.Errorf("keys: rewrap: %w", err)
	}
	// No key row is added, changed or removed until the commit; readers are not blocked.
	if _, err := tx.Exec(ctx, `LOCK TABLE encryption_keys IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return 0, fmt.Errorf("keys: rewrap: %w", err)
	}
	type storedKey struct {
		purpose string
		version int
		wrapped []byte
	}
	rows, err := tx.Query(ctx, `SELECT purpose, version, wrapped_key FROM encryption_keys ORDER BY purpose, version`)
	if err != nil {
		return 0, fmt.Errorf("keys: rewrap: %w", err)
	}
	var stored []storedKey
	for rows.Next() {
		var k storedKey
		if err := rows.Scan(&k.purpose, &k.version, &k.wrapped); err != nil {
			rows.Close()
			return 0, fmt.Errorf("keys: rewrap: %w", err)
		}
		stored = append(stored, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("keys: rewrap: %w", err)
	}
	if len(stored) == 0 {
		return 0, fmt.Errorf("keys: rewrap: no encryption keys in the database (run `vitalnexa migrate`)")
	}
	for i, k := range stored {
		aad := wrapAAD(k.purpose, k.version)
		key, err := from.Unwrap(ctx, k.wrapped, aad)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			if again, err := to.Unwrap(ctx, k.wrapped, aad); err == nil {
				clear(again)
				return 0, fmt.Errorf("keys: rewrap: %s key v%d is already wrapped by the new master key; nothing changed", k.purpose, k.version)
			}
			return 0, fmt.Errorf("keys: rewrap: the current master key does not unwrap %s key v%d; nothing changed", k.purpose, k.version)
		}
		rewrapped, err := to.Wrap(ctx, key, aad)
		if err != nil {
			clear(key)
			return 0, fmt.Errorf("keys: rewrap: wrap %s key v%d with the new master key: %w; nothing changed", k.purpose, k.version, err)
		}
		check, err := to.Unwrap(ctx, rewrapped, aad)
		same := err == nil && bytes.Equal(check, key)
		clear(check)
		clear(key)
		if !same {
			return 0, fmt.Errorf("keys: rewrap: the new master key does not unwrap what it wrapped (%s key v%d); nothing changed", k.purpose, k.version)
		}
		stored[i].wrapped = rewrapped
	}
	for _, k := range stored {
		tag, err := tx.Exec(ctx, `UPDATE encryption_keys SET wrapped_key = $3 WHERE purpose = $1 AND version = $2`,
			k.purpose, k.version, k.wrapped)
		if err != nil {
			return 0, fmt.Errorf("keys: rewrap: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return 0, fmt.Errorf("keys: rewrap: %s key v%d vanished; nothing changed", k.purpose, k.version)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("keys: rewrap: %w", err)
	}
	return len(stored), nil
}

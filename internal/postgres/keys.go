package postgres

import (
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

// LoadKeyring unwraps every usable key version. The newest active data key is the one
// used for writes. It fails when the master key does not unwrap a stored key, so a
// server with the wrong master key refuses to start rather than write unreadable data.
func LoadKeyring(ctx context.Context, pool *pgxpool.Pool, w keyring.Wrapper) (*keyring.Keyring, error) {
	rows, err := pool.Query(ctx, `SELECT purpose, version, state, wrapped_key FROM encryption_keys
		WHERE state <> 'revoked' ORDER BY purpose, version`)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer rows.Close()
	data := map[int][]byte{}
	var blind []byte
	current := 0
	for rows.Next() {
		var purpose, state string
		var version int
		var wrapped []byte
		if err := rows.Scan(&purpose, &version, &state, &wrapped); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		key, err := w.Unwrap(ctx, wrapped, wrapAAD(purpose, version))
		if err != nil {
			return nil, fmt.Errorf("keys: the master key does not unwrap %s key v%d (wrong VITALNEXA_MASTER_KEY?)", purpose, version)
		}
		switch purpose {
		case "data":
			data[version] = key
			if state == "active" && version > current {
				current = version
			}
		case "blind_index":
			blind = key
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if current == 0 || blind == nil {
		return nil, fmt.Errorf("keys: no encryption keys in the database (run `vitalnexa migrate`)")
	}
	return keyring.New(data, current, blind)
}

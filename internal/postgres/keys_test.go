package postgres_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

// storedAAD is the additional data a wrapped key is stored under (postgres.wrapAAD).
func storedAAD(purpose string, version int) []byte {
	return fmt.Appendf(nil, "vitalnexa/encryption_keys/%s/%d", purpose, version)
}

func mustLocalWrapper(t *testing.T, key []byte) keyring.Wrapper {
	t.Helper()
	w, err := keyring.NewLocalWrapper(key)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustNewKey(t *testing.T) []byte {
	t.Helper()
	k, err := keyring.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustBase64KeyWrapper(t *testing.T) keyring.Wrapper {
	t.Helper()
	w, err := keyring.OpenKMSWrapper(context.Background(), "base64key://"+base64.URLEncoding.EncodeToString(mustNewKey(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.(io.Closer).Close() })
	return w
}

// mustAddKey stores a data-key version wrapped by w, as the owner.
func mustAddKey(t *testing.T, owner *pgxpool.Pool, w keyring.Wrapper, version int, state string) {
	t.Helper()
	wrapped, err := w.Wrap(bg(), mustNewKey(t), storedAAD("data", version))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(bg(), `INSERT INTO encryption_keys (purpose, version, state, wrapped_key) VALUES ('data', $1, $2, $3)`,
		version, state, wrapped); err != nil {
		t.Fatal(err)
	}
}

// dataSnapshot is a digest of every row of every table but the wrapped keys, read as the
// superuser (no row-level security), and the wrapped keys themselves.
type dataSnapshot struct {
	tables  map[string]string
	keyRows string // encryption_keys without wrapped_key
	wrapped map[string][]byte
}

func mustSnapshot(t *testing.T, admin *pgxpool.Pool) dataSnapshot {
	t.Helper()
	s := dataSnapshot{tables: map[string]string{}, wrapped: map[string][]byte{}}
	rows, err := admin.Query(bg(), `SELECT format('%I', tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'encryption_keys'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if rows.Err() != nil || len(tables) < 5 {
		t.Fatalf("tables %v: %v", tables, rows.Err())
	}
	for _, name := range tables {
		var sum string
		if err := admin.QueryRow(bg(), fmt.Sprintf(`SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM %s t`, name)).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		s.tables[name] = sum
	}
	if err := admin.QueryRow(bg(), `SELECT string_agg((to_jsonb(k) - 'wrapped_key')::text, ',' ORDER BY purpose, version) FROM encryption_keys k`).Scan(&s.keyRows); err != nil {
		t.Fatal(err)
	}
	krows, err := admin.Query(bg(), `SELECT purpose || '/' || version, wrapped_key FROM encryption_keys`)
	if err != nil {
		t.Fatal(err)
	}
	for krows.Next() {
		var id string
		var w []byte
		if err := krows.Scan(&id, &w); err != nil {
			t.Fatal(err)
		}
		s.wrapped[id] = w
	}
	return s
}

// mustReadResults reads a user's test results through the server's services.
func mustReadResults(t *testing.T, db *postgres.DB, user context.Context) []string {
	t.Helper()
	results, _, err := db.FindTestResults(user, phr.TestResultFilter{Limit: 100})
	if err != nil {
		t.Fatalf("FindTestResults: %v", err)
	}
	var out []string
	for _, r := range results {
		out = append(out, r.ID+" "+r.Name+" "+r.Value+" "+r.Unit)
	}
	if len(out) == 0 {
		t.Fatal("no test results")
	}
	return out
}

func TestRewrapKeysMovesEveryKeyAndNoValue(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	owner := pgtest.MustPool(t, d.OwnerURL, 2)
	admin := pgtest.MustPool(t, d.AdminURL, 1)
	alice, bob := MustUser(t, d.DB, "alice@example.com"), MustUser(t, d.DB, "bob@example.com")
	for i, u := range []context.Context{alice, bob} {
		if _, err := d.DB.Import(u, sampleBatch(fmt.Sprint(i), 4)); err != nil {
			t.Fatal(err)
		}
	}
	before := mustReadResults(t, d.DB, alice)
	old := mustLocalWrapper(t, d.MasterKey)
	// An older version and a revoked one: both must still unwrap under the new master key
	// (the revoked one until re-encryption has moved its values).
	mustAddKey(t, owner, old, 2, "retired")
	mustAddKey(t, owner, old, 3, "revoked")
	snap := mustSnapshot(t, admin)

	kms := mustBase64KeyWrapper(t)
	n, err := postgres.RewrapKeys(bg(), owner, old, kms)
	if err != nil {
		t.Fatalf("RewrapKeys: %v", err)
	}
	if got, want := n, 4; got != want { // data v1..v3 and the blind-index key
		t.Fatalf("rewrapped %d keys, want %d", got, want)
	}
	after := mustSnapshot(t, admin)
	for name, sum := range snap.tables {
		if after.tables[name] != sum {
			t.Errorf("table %s changed", name)
		}
	}
	if after.keyRows != snap.keyRows {
		t.Errorf("encryption_keys changed beyond wrapped_key:\n%s\n%s", snap.keyRows, after.keyRows)
	}
	for id, w := range after.wrapped {
		if bytes.Equal(w, snap.wrapped[id]) {
			t.Errorf("key %s is still wrapped as before", id)
		}
		purpose, version, _ := strings.Cut(id, "/")
		var v int
		fmt.Sscan(version, &v)
		if _, err := kms.Unwrap(bg(), w, storedAAD(purpose, v)); err != nil {
			t.Errorf("key %s does not unwrap with the new master key: %v", id, err)
		}
	}

	if _, err := postgres.LoadKeyring(bg(), d.DB.Pool, old); err == nil {
		t.Fatal("the old master key still loads the keyring")
	}
	keys, err := postgres.LoadKeyring(bg(), d.DB.Pool, kms)
	if err != nil {
		t.Fatalf("LoadKeyring with the new master key: %v", err)
	}
	db := &postgres.DB{Pool: d.DB.Pool, Keys: keys}
	if got, want := strings.Join(mustReadResults(t, db, alice), "\n"), strings.Join(before, "\n"); got != want {
		t.Fatalf("results read with the rewrapped keys:\n%s\nwant\n%s", got, want)
	}
	if _, err := db.FindUserByID(bob, phr.UserIDFromContext(bob)); err != nil {
		t.Fatalf("reading a user with the rewrapped keys: %v", err)
	}

	t.Run("a second run fails and changes nothing", func(t *testing.T) {
		_, err := postgres.RewrapKeys(bg(), owner, old, kms)
		if err == nil || !strings.Contains(err.Error(), "already wrapped by the new master key") {
			t.Fatalf("RewrapKeys again: %v", err)
		}
		again := mustSnapshot(t, admin)
		for id, w := range after.wrapped {
			if !bytes.Equal(again.wrapped[id], w) {
				t.Fatalf("key %s changed", id)
			}
		}
	})
	t.Run("and back to a local key", func(t *testing.T) {
		local := mustLocalWrapper(t, mustNewKey(t))
		if _, err := postgres.RewrapKeys(bg(), owner, kms, local); err != nil {
			t.Fatal(err)
		}
		keys, err := postgres.LoadKeyring(bg(), d.DB.Pool, local)
		if err != nil {
			t.Fatal(err)
		}
		db := &postgres.DB{Pool: d.DB.Pool, Keys: keys}
		if got, want := strings.Join(mustReadResults(t, db, alice), "\n"), strings.Join(before, "\n"); got != want {
			t.Fatalf("results read after the second rewrap differ")
		}
	})
}

func TestRewrapKeysChangesNothingWhenAKeyDoesNotUnwrap(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	owner := pgtest.MustPool(t, d.OwnerURL, 2)
	admin := pgtest.MustPool(t, d.AdminURL, 1)
	old := mustLocalWrapper(t, d.MasterKey)
	// A version wrapped by some other master key (a botched restore, a bad rotation).
	mustAddKey(t, owner, mustLocalWrapper(t, mustNewKey(t)), 2, "retired")
	snap := mustSnapshot(t, admin)
	_, err := postgres.RewrapKeys(bg(), owner, old, mustLocalWrapper(t, mustNewKey(t)))
	if err == nil || !strings.Contains(err.Error(), "data key v2") {
		t.Fatalf("RewrapKeys: %v, want a failure naming data key v2", err)
	}
	after := mustSnapshot(t, admin)
	for id, w := range snap.wrapped {
		if !bytes.Equal(after.wrapped[id], w) {
			t.Fatalf("key %s changed although the rewrap failed", id)
		}
	}
	if _, err := postgres.RewrapKeys(bg(), owner, mustLocalWrapper(t, mustNewKey(t)), old); err == nil {
		t.Fatal("RewrapKeys with a wrong current master key succeeded")
	}
}

func TestRewrapKeysRefusesTheServerRole(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	old := mustLocalWrapper(t, d.MasterKey)
	// The server may read the wrapped keys but must not replace them.
	if _, err := postgres.RewrapKeys(bg(), d.DB.Pool, old, mustLocalWrapper(t, mustNewKey(t))); err == nil {
		t.Fatal("the server role rewrapped the keys")
	}
	if _, err := postgres.LoadKeyring(bg(), d.DB.Pool, old); err != nil {
		t.Fatalf("the keys changed: %v", err)
	}
}

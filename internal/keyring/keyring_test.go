package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// MustKeys returns n random data keys, versions 1..n, and a blind-index key.
func MustKeys(tb testing.TB, n int) (map[int][]byte, []byte) {
	tb.Helper()
	keys := make(map[int][]byte, n)
	for v := 1; v <= n; v++ {
		keys[v] = MustGenerateKey(tb)
	}
	return keys, MustGenerateKey(tb)
}

func MustGenerateKey(tb testing.TB) []byte {
	tb.Helper()
	k, err := GenerateKey()
	if err != nil {
		tb.Fatalf("GenerateKey: %v", err)
	}
	return k
}

func MustNew(tb testing.TB, keys map[int][]byte, current int, blind []byte) *Keyring {
	tb.Helper()
	k, err := New(keys, current, blind)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return k
}

func MustEncrypt(tb testing.TB, k *Keyring, plaintext string, f Field) string {
	tb.Helper()
	v, err := k.EncryptString(plaintext, f)
	if err != nil {
		tb.Fatalf("Encrypt: %v", err)
	}
	return v
}

func TestNew(t *testing.T) {
	t.Parallel()
	a, b, blind := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	tests := []struct {
		name    string
		keys    map[int][]byte
		current int
		blind   []byte
		wantErr bool
	}{
		{"one version", map[int][]byte{1: a}, 1, blind, false},
		{"two versions, current is older", map[int][]byte{1: a, 2: b}, 1, blind, false},
		{"no data keys", map[int][]byte{}, 1, blind, true},
		{"current version missing", map[int][]byte{1: a}, 2, blind, true},
		{"version zero", map[int][]byte{0: a}, 0, blind, true},
		{"negative version", map[int][]byte{-1: a, 1: b}, 1, blind, true},
		{"31-byte data key", map[int][]byte{1: a[:31]}, 1, blind, true},
		{"33-byte data key", map[int][]byte{1: append(bytes.Clone(a), 0)}, 1, blind, true},
		{"short blind-index key", map[int][]byte{1: a}, 1, blind[:16], true},
		{"missing blind-index key", map[int][]byte{1: a}, 1, nil, true},
		// A blind-index key reused as a data key would tie the two purposes together.
		{"blind-index key equals a data key", map[int][]byte{1: a}, 1, a, true},
		// A rotation that re-used the old key gives no protection after a key compromise.
		{"two versions share a key", map[int][]byte{1: a, 2: bytes.Clone(a)}, 2, blind, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := New(tt.keys, tt.current, tt.blind)
			if got, want := err != nil, tt.wantErr; got != want {
				t.Fatalf("New error = %v, want error %v", err, want)
			}
			if err != nil {
				if msg := err.Error(); strings.Contains(msg, hex.EncodeToString(a)) || strings.Contains(msg, string(a)) {
					t.Fatalf("error %q contains key material", msg)
				}
				return
			}
			if got, want := k.CurrentVersion(), tt.current; got != want {
				t.Fatalf("CurrentVersion() = %d, want %d", got, want)
			}
		})
	}
}

// New must copy the keys: a caller that zeroes its buffers after loading must not silently
// change the keys the keyring encrypts with.
func TestNewCopiesKeys(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 1)
	k := MustNew(t, keys, 1, blind)
	f := Field{"users", "email", "u-1"}
	v := MustEncrypt(t, k, "alice@example.com", f)
	idx := k.BlindIndex("email", []byte("x"))
	clear(keys[1])
	clear(blind)
	if got, err := k.DecryptString(v, f); err != nil || got != "alice@example.com" {
		t.Fatalf("after clearing caller's keys: Decrypt = %q, %v", got, err)
	}
	if got := k.BlindIndex("email", []byte("x")); !bytes.Equal(got, idx) {
		t.Fatalf("after clearing caller's blind key the index changed")
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 1)
	k := MustNew(t, keys, 1, blind)
	tests := []struct {
		name      string
		plaintext []byte
		f         Field
	}{
		{"empty plaintext", []byte{}, Field{"users", "full_name", "u-1"}},
		{"ascii", []byte("Alice Example"), Field{"users", "full_name", "u-1"}},
		{"unicode", []byte("Zoë Ñúñez 山田"), Field{"users", "full_name", "u-2"}},
		{"binary with separators", []byte("a:b\x00c:d\xff"), Field{"files", "content", "f-1"}},
		{"64 KiB", bytes.Repeat([]byte("x"), 64<<10), Field{"files", "content", "f-2"}},
		{"empty row id", []byte("cursor"), Field{"cursor", "health_records", ""}},
		{"schema-qualified table", []byte("v"), Field{"public.users", "email", "u-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := k.Encrypt(tt.plaintext, tt.f)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if got, want := strings.Count(v, ":"), 3; got != want {
				t.Fatalf("value has %d ':' separators, want %d", got, want)
			}
			if !strings.HasPrefix(v, "v1:") {
				t.Fatalf("value does not start with the current version v1:")
			}
			if len(tt.plaintext) >= 4 && strings.Contains(v, string(tt.plaintext)) {
				t.Fatalf("value contains the plaintext")
			}
			got, err := k.Decrypt(v, tt.f)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Fatalf("Decrypt = %q, want %q", got, tt.plaintext)
			}
			if got == nil {
				t.Fatalf("Decrypt returned nil for a valid value")
			}
			s, err := k.DecryptString(v, tt.f)
			if err != nil {
				t.Fatalf("DecryptString: %v", err)
			}
			if got, want := s, string(tt.plaintext); got != want {
				t.Fatalf("DecryptString = %q, want %q", got, want)
			}
		})
	}
}

// TestConstruction decrypts Encrypt's output with the standard library alone, and the other
// way round, so the stored format and key derivation are pinned: a change that would make
// existing rows unreadable fails here.
func TestConstruction(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 3)
	k := MustNew(t, keys, 3, blind)
	f := Field{Table: "users", Column: "email", RowID: "u-1"}
	// Length-prefixed (Table, Column, RowID), written out by hand.
	ad := []byte("\x00\x00\x00\x05users\x00\x00\x00\x05email\x00\x00\x00\x03u-1")
	fieldKey, err := hkdf.Key(sha256.New, keys[3], nil, "vitalnexa/field/v1/users.email", 32)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(fieldKey)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Encrypt output opens with the documented construction", func(t *testing.T) {
		v := MustEncrypt(t, k, "alice@example.com", f)
		parts := strings.Split(v, ":")
		if got, want := len(parts), 4; got != want {
			t.Fatalf("%d parts, want %d", got, want)
		}
		if got, want := parts[0], "v3"; got != want {
			t.Fatalf("version part = %q, want %q", got, want)
		}
		var raw [3][]byte
		for i, p := range parts[1:] {
			if raw[i], err = base64.RawURLEncoding.DecodeString(p); err != nil {
				t.Fatalf("part %d is not unpadded base64url: %v", i+1, err)
			}
		}
		if got, want := len(raw[0]), 12; got != want {
			t.Fatalf("iv is %d bytes, want %d", got, want)
		}
		if got, want := len(raw[2]), 16; got != want {
			t.Fatalf("tag is %d bytes, want %d", got, want)
		}
		pt, err := gcm.Open(nil, raw[0], append(raw[1], raw[2]...), ad)
		if err != nil {
			t.Fatalf("independent open: %v", err)
		}
		if got, want := string(pt), "alice@example.com"; got != want {
			t.Fatalf("independent open = %q, want %q", got, want)
		}
	})

	t.Run("a value built by hand decrypts", func(t *testing.T) {
		iv := bytes.Repeat([]byte{7}, 12)
		sealed := gcm.Seal(nil, iv, []byte("1980-02-29"), ad)
		v := "v3:" + base64.RawURLEncoding.EncodeToString(iv) + ":" +
			base64.RawURLEncoding.EncodeToString(sealed[:len(sealed)-16]) + ":" +
			base64.RawURLEncoding.EncodeToString(sealed[len(sealed)-16:])
		got, err := k.DecryptString(v, f)
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if want := "1980-02-29"; got != want {
			t.Fatalf("Decrypt = %q, want %q", got, want)
		}
	})
}

func TestEncryptUsesFreshNonce(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 1)
	k := MustNew(t, keys, 1, blind)
	f := Field{"users", "email", "u-1"}
	seen := map[string]bool{}
	ivs := map[string]bool{}
	for range 100 {
		v := MustEncrypt(t, k, "same plaintext", f)
		if seen[v] {
			t.Fatalf("two encryptions of the same plaintext gave the same value")
		}
		seen[v] = true
		iv := strings.Split(v, ":")[1]
		if ivs[iv] {
			t.Fatalf("nonce reused")
		}
		ivs[iv] = true
	}
}

func TestFieldKeysDiffer(t *testing.T) {
	t.Parallel()
	keys, _ := MustKeys(t, 2)
	type derivation struct {
		version       int
		table, column string
	}
	ds := []derivation{
		{1, "users", "email"},
		{1, "users", "full_name"},
		{1, "test_results", "email"},
		{2, "users", "email"},
		// Without a separator between table and column these two would collide.
		{1, "ab", "c"},
		{1, "a", "bc"},
	}
	seen := map[string]derivation{}
	for _, d := range ds {
		key, err := deriveFieldKey(keys[d.version], d.table, d.column)
		if err != nil {
			t.Fatalf("deriveFieldKey: %v", err)
		}
		if got, want := len(key), 32; got != want {
			t.Fatalf("field key is %d bytes, want %d", got, want)
		}
		if bytes.Equal(key, keys[d.version]) {
			t.Fatalf("%v: field key equals the data key", d)
		}
		if prev, ok := seen[string(key)]; ok {
			t.Fatalf("%v and %v derive the same field key", prev, d)
		}
		seen[string(key)] = d
	}
}

func TestAdditionalDataIsUnambiguous(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b Field
	}{
		// Shifting a boundary between table and column must change the additional data.
		{"table/column boundary", Field{"a", "bc", "r"}, Field{"ab", "c", "r"}},
		// Shifting a boundary between column and row id must change the additional data.
		{"column/row boundary", Field{"t", "c", "r1"}, Field{"t", "cr", "1"}},
		// A separator character inside a name must not forge another field.
		{"embedded separator", Field{"t", "c", "\x00\x00\x00\x01x"}, Field{"t", "c\x00\x00\x00\x01x", ""}},
		{"empty row id vs none", Field{"t", "c", ""}, Field{"t", "c", "\x00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if bytes.Equal(tt.a.additionalData(), tt.b.additionalData()) {
				t.Fatalf("%q and %q have the same additional data", tt.a, tt.b)
			}
		})
	}
}

// mutatePart returns v with part i (0 version, 1 iv, 2 ct, 3 tag) replaced by fn(part).
func mutatePart(v string, i int, fn func(string) string) string {
	parts := strings.Split(v, ":")
	parts[i] = fn(parts[i])
	return strings.Join(parts, ":")
}

// mutateBytes returns v with the decoded bytes of part i replaced by fn(bytes).
func mutateBytes(v string, i int, fn func([]byte) []byte) string {
	return mutatePart(v, i, func(s string) string {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			panic(err)
		}
		return base64.RawURLEncoding.EncodeToString(fn(b))
	})
}

func flipFirstBit(b []byte) []byte { b = bytes.Clone(b); b[0] ^= 1; return b }

func TestDecryptRejects(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 2)
	k := MustNew(t, keys, 2, blind)                             // writes v2, reads v1 and v2
	old := MustNew(t, keys, 1, blind)                           // writes v1
	revoked := MustNew(t, map[int][]byte{2: keys[2]}, 2, blind) // v1 removed
	f := Field{"users", "email", "u-1"}
	const secret = "alice@example.com"
	v2 := MustEncrypt(t, k, secret, f)
	v1 := MustEncrypt(t, old, secret, f)
	emptyV := MustEncrypt(t, k, "", f)
	rest := strings.SplitN(v2, ":", 2)[1]

	// lastChar makes the final base64 character of a part encode non-zero padding bits.
	nonCanonical := func(s string) string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		i := strings.IndexByte(alphabet, s[len(s)-1])
		return s[:len(s)-1] + string(alphabet[i|1])
	}

	tests := []struct {
		name   string
		kr     *Keyring
		value  string
		f      Field
		reason string
	}{
		// Garbage where a ciphertext should be.
		{"empty string", k, "", f, "parts"},
		// Truncated value with a part missing.
		{"three parts", k, strings.Join(strings.Split(v2, ":")[:3], ":"), f, "parts"},
		// Extra part appended to smuggle data.
		{"five parts", k, v2 + ":AAAA", f, "parts"},
		// Value naming a key version the keyring never had.
		{"unknown version", k, "v9:" + rest, f, "unknown key version"},
		// Value under a revoked (unloaded) version must not be read with another key.
		{"revoked version", revoked, v1, f, "unknown key version"},
		// Version 0 is not a version.
		{"version zero", k, "v0:" + rest, f, "version"},
		// Alternative spellings of a version would make two stored forms of one value.
		{"leading zero in version", k, "v02:" + rest, f, "version"},
		{"plus sign in version", k, "v+2:" + rest, f, "version"},
		{"negative version", k, "v-2:" + rest, f, "version"},
		{"missing v prefix", k, "2:" + rest, f, "version"},
		{"upper-case V", k, "V2:" + rest, f, "version"},
		{"space in version", k, "v2 :" + rest, f, "version"},
		{"leading white space", k, " " + v2, f, "version"},
		// Integer overflow in the version parser.
		{"huge version", k, "v99999999999999999999:" + rest, f, "version"},
		// Characters outside base64url.
		{"bad base64 in iv", k, mutatePart(v2, 1, func(s string) string { return "!" + s[1:] }), f, "base64"},
		// Standard-alphabet base64 is not the stored format.
		{"standard alphabet in ct", k, mutatePart(v2, 2, func(s string) string { return "+" + s[1:] }), f, "base64"},
		// Padding is not part of the stored format.
		{"padded tag", k, mutatePart(v2, 3, func(s string) string { return s + "==" }), f, "base64"},
		{"padded iv", k, mutatePart(v2, 1, func(s string) string { return s + "=" }), f, "base64"},
		// The base64 decoder skips CR/LF; accepting them would allow many spellings.
		{"newline inside ct", k, mutatePart(v2, 2, func(s string) string { return s[:2] + "\n" + s[2:] }), f, "base64"},
		{"trailing newline", k, v2 + "\n", f, "base64"},
		// Non-zero trailing bits decode to the same bytes: a malleable second spelling.
		{"non-canonical tag encoding", k, mutatePart(v2, 3, nonCanonical), f, "base64"},
		// Nonce of the wrong size (cipher.AEAD.Open would panic).
		{"iv 11 bytes", k, mutateBytes(v2, 1, func(b []byte) []byte { return b[:11] }), f, "iv is not"},
		{"iv 13 bytes", k, mutateBytes(v2, 1, func(b []byte) []byte { return append(b, 0) }), f, "iv is not"},
		{"empty iv", k, mutatePart(v2, 1, func(string) string { return "" }), f, "iv is not"},
		// Truncated tag, an attempt to weaken authentication.
		{"tag 15 bytes", k, mutateBytes(v2, 3, func(b []byte) []byte { return b[:15] }), f, "tag is not"},
		{"tag 17 bytes", k, mutateBytes(v2, 3, func(b []byte) []byte { return append(b, 0) }), f, "tag is not"},
		{"empty tag", k, mutatePart(v2, 3, func(string) string { return "" }), f, "tag is not"},
		// Bit-flipping the ciphertext.
		{"tampered ciphertext", k, mutateBytes(v2, 2, flipFirstBit), f, "authentication failed"},
		// Forged tag.
		{"tampered tag", k, mutateBytes(v2, 3, flipFirstBit), f, "authentication failed"},
		// Changed nonce.
		{"tampered iv", k, mutateBytes(v2, 1, flipFirstBit), f, "authentication failed"},
		// Truncated ciphertext.
		{"truncated ciphertext", k, mutateBytes(v2, 2, func(b []byte) []byte { return b[:len(b)-1] }), f, "authentication failed"},
		// Appending to an empty ciphertext.
		{"ciphertext added to empty value", k, mutatePart(emptyV, 2, func(string) string { return "AAAA" }), f, "authentication failed"},
		// Ciphertext copied to another user's row.
		{"moved to another row", k, v2, Field{"users", "email", "u-2"}, "authentication failed"},
		// Ciphertext copied to another column of the same row (e.g. email shown as name).
		{"moved to another column", k, v2, Field{"users", "full_name", "u-1"}, "authentication failed"},
		// Ciphertext copied to another table with the same column and id.
		{"moved to another table", k, v2, Field{"patients", "email", "u-1"}, "authentication failed"},
		// Relabelled version: must not fall back to the key it was really made with.
		{"v1 value relabelled v2", k, "v2:" + strings.SplitN(v1, ":", 2)[1], f, "authentication failed"},
		{"v2 value relabelled v1", k, "v1:" + rest, f, "authentication failed"},
		// A field name that could collide in key derivation.
		{"dot in column", k, v2, Field{"users", "e.mail", "u-1"}, "invalid field"},
		{"empty table", k, v2, Field{"", "email", "u-1"}, "invalid field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.kr.Decrypt(tt.value, tt.f)
			if err == nil {
				t.Fatalf("Decrypt accepted it and returned %q", got)
			}
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("error %v does not wrap ErrDecrypt", err)
			}
			if got != nil {
				t.Fatalf("Decrypt returned plaintext %q with an error", got)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.reason) {
				t.Fatalf("error %q, want reason %q", msg, tt.reason)
			}
			for _, part := range strings.Split(tt.value, ":") {
				if len(part) >= 8 && strings.Contains(msg, part) {
					t.Fatalf("error %q echoes part of the value", msg)
				}
			}
			if strings.Contains(msg, secret) {
				t.Fatalf("error %q contains the plaintext", msg)
			}
			if _, err := tt.kr.DecryptString(tt.value, tt.f); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("DecryptString error %v does not wrap ErrDecrypt", err)
			}
		})
	}
}

func TestEncryptRejectsInvalidField(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 1)
	k := MustNew(t, keys, 1, blind)
	tests := []struct {
		name string
		f    Field
	}{
		{"empty table", Field{"", "email", "u-1"}},
		{"empty column", Field{"users", "", "u-1"}},
		// ("a.b","c") and ("a","b.c") would share the info string "a.b.c" and so a key.
		{"dot in column", Field{"a", "b.c", "u-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if v, err := k.EncryptString("x", tt.f); err == nil {
				t.Fatalf("Encrypt accepted field %q and returned %q", tt.f, v)
			}
		})
	}
}

func TestVersionAndRotation(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 2)
	old := MustNew(t, map[int][]byte{1: keys[1]}, 1, blind)
	rotated := MustNew(t, keys, 2, blind)
	f := Field{"health_records", "content", "r-1"}
	v1 := MustEncrypt(t, old, "note", f)

	if got, err := Version(v1); err != nil || got != 1 {
		t.Fatalf("Version(v1 value) = %d, %v, want 1", got, err)
	}
	if got, err := rotated.DecryptString(v1, f); err != nil || got != "note" {
		t.Fatalf("rotated keyring reads an old value: %q, %v", got, err)
	}
	v2, changed, err := rotated.Reencrypt(v1, f)
	if err != nil || !changed {
		t.Fatalf("Reencrypt = %v, %v", changed, err)
	}
	if got, err := Version(v2); err != nil || got != 2 {
		t.Fatalf("Version(re-encrypted) = %d, %v, want 2", got, err)
	}
	if got, err := rotated.DecryptString(v2, f); err != nil || got != "note" {
		t.Fatalf("re-encrypted value: %q, %v", got, err)
	}
	if _, err := old.Decrypt(v2, f); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("keyring without v2 read a v2 value: %v", err)
	}
	same, changed, err := rotated.Reencrypt(v2, f)
	if err != nil || changed || same != v2 {
		t.Fatalf("Reencrypt of a current value = %v, %v; want it unchanged", changed, err)
	}
	// Re-encryption must not launder a value moved from another row.
	if _, _, err := rotated.Reencrypt(v1, Field{"health_records", "content", "r-2"}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Reencrypt of a moved value: %v", err)
	}

	for _, bad := range []string{"", "v1", "v01:" + strings.SplitN(v1, ":", 2)[1], v1 + "="} {
		if _, err := Version(bad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Version(%q) error %v, want ErrDecrypt", bad, err)
		}
	}
}

// TestConcurrentUse exercises the field-key cache from many goroutines; run with -race.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 2)
	k := MustNew(t, keys, 2, blind)
	old := MustNew(t, keys, 1, blind)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				f := Field{"t", fmt.Sprintf("c%d", i%5), fmt.Sprintf("r%d", g)}
				want := fmt.Sprintf("value %d/%d", g, i)
				src := k
				if i%2 == 0 {
					src = old
				}
				v, err := src.EncryptString(want, f)
				if err != nil {
					t.Errorf("Encrypt: %v", err)
					return
				}
				if got, err := k.DecryptString(v, f); err != nil || got != want {
					t.Errorf("Decrypt = %q, %v, want %q", got, err, want)
					return
				}
				_ = k.BlindIndex(fmt.Sprintf("p%d", i%3), []byte(want))
			}
		})
	}
	wg.Wait()
}

func TestKeyringDoesNotPrintKeys(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 2)
	k := MustNew(t, keys, 2, blind)
	_ = MustEncrypt(t, k, "x", Field{"users", "email", "u-1"}) // populate the cache too
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("loaded", "keyring", k)
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", k),
		"%+v":  fmt.Sprintf("%+v", k),
		"%#v":  fmt.Sprintf("%#v", k),
		"%s":   fmt.Sprintf("%s", k),
		"slog": logged.String(),
	}
	for name, out := range outputs {
		for _, key := range [][]byte{keys[1], keys[2], blind} {
			for _, enc := range []string{string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), fmt.Sprint(key)} {
				if strings.Contains(out, enc) {
					t.Fatalf("%s output contains key material: %q", name, out)
				}
			}
		}
	}
	if !strings.Contains(outputs["slog"], `"current_version":2`) {
		t.Fatalf("slog output %q lacks the current version", outputs["slog"])
	}
}

// fuzzKeyring has fixed keys so that corpus entries found once stay meaningful.
func fuzzKeyring(tb testing.TB) *Keyring {
	tb.Helper()
	return MustNew(tb, map[int][]byte{1: bytes.Repeat([]byte{1}, 32), 2: bytes.Repeat([]byte{2}, 32)}, 2, bytes.Repeat([]byte{3}, 32))
}

func FuzzDecrypt(f *testing.F) {
	k := fuzzKeyring(f)
	old := MustNew(f, map[int][]byte{1: bytes.Repeat([]byte{1}, 32)}, 1, bytes.Repeat([]byte{3}, 32))
	field := Field{"users", "email", "u-1"}
	other := Field{"users", "email", "u-2"}
	for _, pt := range []string{"", "alice@example.com", strings.Repeat("z", 100)} {
		v := MustEncrypt(f, k, pt, field)
		f.Add(v)
		f.Add(MustEncrypt(f, old, pt, field))
		f.Add(v + "=")
		f.Add("v1:" + strings.SplitN(v, ":", 2)[1])
		f.Add(strings.ReplaceAll(v, ":", "::"))
	}
	for _, s := range []string{"", ":::", "v1:::", "v0:AAAAAAAAAAAAAAAA:AA:AAAAAAAAAAAAAAAAAAAAAA", "v2:\n:\r:", "v18446744073709551617:a:b:c", "v2:AAAAAAAAAAAAAAAA::AAAAAAAAAAAAAAAAAAAAAA=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		p, perr := parseValue(value)
		if perr == nil {
			// The parser accepts only the canonical spelling of a value.
			if got := formatValue(p.version, p.iv, p.ct, p.tag); got != value {
				t.Fatalf("parser accepted a non-canonical spelling %q of %q", value, got)
			}
		} else if !errors.Is(perr, ErrDecrypt) {
			t.Fatalf("parse error %v does not wrap ErrDecrypt", perr)
		}
		if v, err := Version(value); (err == nil) != (perr == nil) || (err == nil && v != p.version) {
			t.Fatalf("Version = %d, %v disagrees with the parser (%v)", v, err, perr)
		}
		pt, err := k.Decrypt(value, field)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Decrypt error %v does not wrap ErrDecrypt", err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("Decrypt accepted a value the parser rejects")
		}
		if _, err := k.Decrypt(value, other); err == nil {
			t.Fatalf("an accepted value also decrypts for another row")
		}
		again, err := k.Encrypt(pt, field)
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		pt2, err := k.Decrypt(again, field)
		if err != nil || !bytes.Equal(pt, pt2) {
			t.Fatalf("re-encrypted value decrypts to %q, %v; want %q", pt2, err, pt)
		}
	})
}

func BenchmarkEncrypt(b *testing.B) {
	keys, blind := MustKeys(b, 1)
	k := MustNew(b, keys, 1, blind)
	f := Field{"health_records", "content", "r-1"}
	pt := bytes.Repeat([]byte("a"), 64)
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		if _, err := k.Encrypt(pt, f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	keys, blind := MustKeys(b, 1)
	k := MustNew(b, keys, 1, blind)
	f := Field{"health_records", "content", "r-1"}
	pt := bytes.Repeat([]byte("a"), 64)
	v, err := k.Encrypt(pt, f)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		if _, err := k.Decrypt(v, f); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReplaceWhileInUse(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 3)
	k := MustNew(t, map[int][]byte{1: keys[1]}, 1, blind)
	f := Field{"test_results", "value", "r-1"}
	v1 := MustEncrypt(t, k, "13.5", f)
	// Another process rotated: v2 is now the write version, v1 still reads.
	if err := k.Replace(map[int][]byte{1: keys[1], 2: keys[2]}, 2); err != nil {
		t.Fatal(err)
	}
	v2 := MustEncrypt(t, k, "13.5", f)
	if got, _ := Version(v2); got != 2 {
		t.Fatalf("write after Replace under v%d, want v2", got)
	}
	if got, err := k.DecryptString(v1, f); err != nil || got != "13.5" {
		t.Fatalf("v1 after rotation: %q %v", got, err)
	}
	// v1 destroyed: its values no longer open, even from the field-key cache.
	if err := k.Replace(map[int][]byte{2: keys[2]}, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Decrypt(v1, f); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("a destroyed version still decrypts: %v", err)
	}
	// Replace keeps New's rules.
	if err := k.Replace(map[int][]byte{2: keys[2]}, 3); err == nil {
		t.Fatal("Replace accepted a current version without a key")
	}
	if err := k.Replace(map[int][]byte{2: keys[2], 3: blind}, 3); err == nil {
		t.Fatal("Replace accepted the blind-index key as a data key")
	}
	counts := k.TakeEncryptionCounts()
	if counts[1] != 1 || counts[2] != 1 {
		t.Fatalf("encryption counts %v, want one per version", counts)
	}
	if again := k.TakeEncryptionCounts(); len(again) != 0 {
		t.Fatalf("counts not reset: %v", again)
	}
	// Counts a failed flush gives back are added to what came since.
	k.ReturnEncryptionCounts(counts)
	if _, err := k.Encrypt([]byte("more"), f); err != nil {
		t.Fatal(err)
	}
	if again := k.TakeEncryptionCounts(); again[1] != 1 || again[2] != 2 {
		t.Fatalf("counts after a return %v, want v1=1 v2=2", again)
	}
}

// Package keyring provides VitalNexa's field-level encryption (AES-256-GCM under per-field
// keys derived with HKDF-SHA256 from versioned data keys), blind indexes for equality lookup
// of encrypted values, and the envelope wrapping of data keys under the master key.
//
// It uses the standard library's crypto only and knows nothing about the database: the
// postgres adapter stores the wrapped keys and the encrypted values, and calls this package.
package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// KeySize is the length in bytes of every key this package accepts or produces.
const KeySize = 32

const (
	nonceSize = 12
	tagSize   = 16

	// fieldInfoPrefix is the HKDF info prefix of field keys. Changing it makes every stored
	// value unreadable, so it carries its own version.
	fieldInfoPrefix = "vitalnexa/field/v1/"
)

// ErrDecrypt is wrapped by every error of Decrypt, DecryptString, Version and Wrapper.Unwrap.
// The wrapping error adds a fixed reason ("unknown key version", "authentication failed", ...)
// and never the value, the plaintext or key material, so it is safe to log.
var ErrDecrypt = errors.New("keyring: value cannot be decrypted")

// b64 is the encoding of the iv, ciphertext and tag parts. Strict rejects non-zero trailing
// bits, so each byte string has exactly one accepted encoding (parse also rejects the CR and
// LF that the decoder would otherwise skip).
var b64 = base64.RawURLEncoding.Strict()

// Field names where a ciphertext lives; it is bound as GCM additional data, so a value
// moved to another table, column or row fails to decrypt.
//
// Table and Column must be non-empty and Column must not contain '.': the field key's
// HKDF info is "vitalnexa/field/v1/"+Table+"."+Column, and a dot in the column would let
// two different fields share a key. RowID may be empty.
type Field struct{ Table, Column, RowID string }

func (f Field) validate() error {
	if f.Table == "" || f.Column == "" || strings.Contains(f.Column, ".") {
		return errors.New("invalid field: table and column must be non-empty and the column must not contain '.'")
	}
	return nil
}

// additionalData encodes (Table, Column, RowID) as length-prefixed parts, so no two distinct
// fields share an encoding (("a","bc") differs from ("ab","c")).
func (f Field) additionalData() []byte {
	b := make([]byte, 0, 12+len(f.Table)+len(f.Column)+len(f.RowID))
	for _, s := range []string{f.Table, f.Column, f.RowID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// Keyring holds the data-key versions, the version used for writes, and the blind-index key.
// It is safe for concurrent use. Its String, GoString and LogValue never show key material.
//
// Replace swaps in another set of versions while the keyring is in use (after a rotation,
// a revocation or a destruction made by another process).
type Keyring struct {
	mu       sync.RWMutex
	dataKeys map[int][]byte
	current  int
	revoked  map[int]bool
	blindKey []byte

	aeads     sync.Map // aeadID -> cipher.AEAD
	blindKeys sync.Map // purpose string -> []byte

	// encryptions counts Encrypt calls per version since the last TakeEncryptionCounts.
	encryptions sync.Map // int -> *atomic.Int64
}

type aeadID struct {
	version       int
	table, column string
}

// New returns a Keyring over copies of the given keys. Every data key and the blind-index
// key must be exactly 32 bytes, every version must be >= 1, current must be one of the
// versions, and no two keys may be equal (a repeated key means a broken rotation or a
// blind-index key reused as a data key). Errors never contain key material.
func New(dataKeys map[int][]byte, current int, blindIndexKey []byte) (*Keyring, error) {
	if len(blindIndexKey) != KeySize {
		return nil, fmt.Errorf("keyring: blind-index key is %d bytes, want %d", len(blindIndexKey), KeySize)
	}
	keys, err := checkDataKeys(dataKeys, current, blindIndexKey)
	if err != nil {
		return nil, err
	}
	return &Keyring{dataKeys: keys, current: current, blindKey: bytes.Clone(blindIndexKey)}, nil
}

// Replace makes dataKeys the versions of the keyring and current the one used for writes,
// under the same rules as New; the blind-index key stays. Versions no longer present can no
// longer decrypt. Concurrent callers see either the old or the new set.
func (k *Keyring) Replace(dataKeys map[int][]byte, current int) error {
	keys, err := checkDataKeys(dataKeys, current, k.blindKey)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for v := range k.dataKeys {
		if _, ok := keys[v]; !ok {
			k.aeads.Range(func(id, _ any) bool {
				if id.(aeadID).version == v {
					k.aeads.Delete(id)
				}
				return true
			})
		}
	}
	k.dataKeys, k.current = keys, current
	return nil
}

// SetRevoked records which versions are revoked: they still decrypt (until their values are
// moved and they are destroyed) so that no read fails, and IsRevoked lets the caller have
// such a value moved at once.
func (k *Keyring) SetRevoked(versions []int) {
	m := map[int]bool{}
	for _, v := range versions {
		m[v] = true
	}
	k.mu.Lock()
	k.revoked = m
	k.mu.Unlock()
}

// IsRevoked reports whether value is encrypted under a revoked version.
func (k *Keyring) IsRevoked(value string) bool {
	v, err := Version(value)
	if err != nil {
		return false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.revoked[v]
}

// Versions lists the data-key versions the keyring holds, ascending.
func (k *Keyring) Versions() []int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]int, 0, len(k.dataKeys))
	for v := range k.dataKeys {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// TakeEncryptionCounts returns how many values each version encrypted since the last call,
// and starts counting again: the caller adds them to the stored totals (nonce budget).
func (k *Keyring) TakeEncryptionCounts() map[int]int64 {
	out := map[int]int64{}
	k.encryptions.Range(func(v, n any) bool {
		if c := n.(*atomic.Int64).Swap(0); c > 0 {
			out[v.(int)] = c
		}
		return true
	})
	return out
}

// ReturnEncryptionCounts gives back counts taken but not stored, so that a failed flush
// does not undercount a key's nonces: the next TakeEncryptionCounts includes them.
func (k *Keyring) ReturnEncryptionCounts(counts map[int]int64) {
	for v, c := range counts {
		k.addEncryptions(v, c)
	}
}

func (k *Keyring) countEncryption(version int) { k.addEncryptions(version, 1) }

func (k *Keyring) addEncryptions(version int, c int64) {
	n, ok := k.encryptions.Load(version)
	if !ok {
		n, _ = k.encryptions.LoadOrStore(version, new(atomic.Int64))
	}
	n.(*atomic.Int64).Add(c)
}

// checkDataKeys validates and copies a set of data keys for New and Replace.
func checkDataKeys(dataKeys map[int][]byte, current int, blindIndexKey []byte) (map[int][]byte, error) {
	if len(dataKeys) == 0 {
		return nil, errors.New("keyring: no data keys")
	}
	k := &Keyring{dataKeys: make(map[int][]byte, len(dataKeys))}
	for v, key := range dataKeys {
		if v < 1 {
			return nil, fmt.Errorf("keyring: data key version %d: versions start at 1", v)
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("keyring: data key v%d is %d bytes, want %d", v, len(key), KeySize)
		}
		if subtle.ConstantTimeCompare(key, blindIndexKey) == 1 {
			return nil, fmt.Errorf("keyring: data key v%d equals the blind-index key", v)
		}
		for w, other := range k.dataKeys {
			if subtle.ConstantTimeCompare(key, other) == 1 {
				return nil, fmt.Errorf("keyring: data keys v%d and v%d are equal", min(v, w), max(v, w))
			}
		}
		k.dataKeys[v] = bytes.Clone(key)
	}
	if _, ok := k.dataKeys[current]; !ok {
		return nil, fmt.Errorf("keyring: current version v%d has no data key", current)
	}
	return k.dataKeys, nil
}

// CurrentVersion is the data-key version Encrypt uses.
func (k *Keyring) CurrentVersion() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.current
}

// String describes the keyring without key material.
func (k *Keyring) String() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return fmt.Sprintf("keyring.Keyring{current: v%d, versions: %d}", k.current, len(k.dataKeys))
}

// GoString keeps %#v from printing the keys.
func (k *Keyring) GoString() string { return k.String() }

// LogValue keeps slog from printing the keys.
func (k *Keyring) LogValue() slog.Value {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return slog.GroupValue(slog.Int("current_version", k.current), slog.Int("versions", len(k.dataKeys)))
}

// Encrypt seals plaintext for f under the current key version with a fresh random nonce and
// returns "v{version}:{iv}:{ciphertext}:{tag}" (base64url parts without padding). Only
// Decrypt with the same Field reads it back. Empty plaintext is allowed. The error is
// non-nil only for an invalid Field.
func (k *Keyring) Encrypt(plaintext []byte, f Field) (string, error) {
	if err := f.validate(); err != nil {
		return "", fmt.Errorf("keyring: encrypt: %w", err)
	}
	current := k.CurrentVersion()
	aead, err := k.aead(current, f)
	if err != nil {
		return "", fmt.Errorf("keyring: encrypt: %w", err)
	}
	iv := make([]byte, nonceSize)
	if _, err := rand.Read(iv); err != nil {
		return "", fmt.Errorf("keyring: encrypt: nonce: %w", err)
	}
	ct, tag := sealParts(aead, iv, plaintext, f.additionalData())
	k.countEncryption(current)
	return formatValue(current, iv, ct, tag), nil
}

// EncryptString is Encrypt of the bytes of s.
func (k *Keyring) EncryptString(s string, f Field) (string, error) {
	return k.Encrypt([]byte(s), f)
}

// Decrypt returns the plaintext of a value made by Encrypt for the same Field, under the
// key version named in the value and no other. Every failure — malformed value, unknown
// version, a value moved from another Field, any tampering — wraps ErrDecrypt; it never
// panics, whatever the input, so it may be fed untrusted strings (e.g. page cursors).
func (k *Keyring) Decrypt(value string, f Field) ([]byte, error) {
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	p, err := parseValue(value)
	if err != nil {
		return nil, err
	}
	aead, err := k.aead(p.version, f)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	plaintext, err := openParts(aead, p.iv, p.ct, p.tag, f.additionalData())
	if err != nil {
		return nil, err
	}
	return plaintext, nil
}

// DecryptString is Decrypt returning a string; errors as Decrypt.
func (k *Keyring) DecryptString(value string, f Field) (string, error) {
	b, err := k.Decrypt(value, f)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Reencrypt decrypts value for f and encrypts it again under the current version, for the
// re-encryption job. It returns value unchanged (and changed false) when it is already at
// the current version. Errors as Decrypt.
func (k *Keyring) Reencrypt(value string, f Field) (newValue string, changed bool, err error) {
	plaintext, err := k.Decrypt(value, f)
	if err != nil {
		return "", false, err
	}
	if v, _ := Version(value); v == k.CurrentVersion() {
		return value, false, nil
	}
	out, err := k.Encrypt(plaintext, f)
	if err != nil {
		return "", false, err
	}
	return out, true, nil
}

// Version returns the key version of a stored value, for re-encryption. It checks the whole
// format (not the tag); a malformed value gives an error wrapping ErrDecrypt.
func Version(value string) (int, error) {
	p, err := parseValue(value)
	if err != nil {
		return 0, err
	}
	return p.version, nil
}

// aead returns the cached AES-256-GCM for (version, table, column), deriving it on first use.
// The version must exist. GCM values from the standard library hold no per-call state, so
// one instance serves concurrent callers.
func (k *Keyring) aead(version int, f Field) (cipher.AEAD, error) {
	k.mu.RLock()
	dataKey, known := k.dataKeys[version]
	k.mu.RUnlock()
	if !known {
		// Checked before the cache, so a version removed by Replace stops at once.
		return nil, errors.New("unknown key version")
	}
	id := aeadID{version, f.Table, f.Column}
	if a, ok := k.aeads.Load(id); ok {
		return a.(cipher.AEAD), nil
	}
	key, err := deriveFieldKey(dataKey, f.Table, f.Column)
	if err != nil {
		return nil, err
	}
	a, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	actual, _ := k.aeads.LoadOrStore(id, a)
	return actual.(cipher.AEAD), nil
}

// deriveFieldKey is the per-field key: HKDF-SHA256 over the data key, no salt (the data key
// is already uniformly random), info naming the table and column.
func deriveFieldKey(dataKey []byte, table, column string) ([]byte, error) {
	key, err := hkdf.Key(sha256.New, dataKey, nil, fieldInfoPrefix+table+"."+column, KeySize)
	if err != nil {
		return nil, errors.New("field key derivation failed")
	}
	return key, nil
}

// newAEAD is the one AES-GCM construction of the package: AES-256 (or the key's size, for
// the known-answer tests), 12-byte nonce, 16-byte tag.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errors.New("bad AES key size")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errors.New("GCM setup failed")
	}
	return aead, nil
}

// sealParts encrypts and splits the GCM output into ciphertext and tag.
func sealParts(aead cipher.AEAD, iv, plaintext, ad []byte) (ct, tag []byte) {
	out := aead.Seal(nil, iv, plaintext, ad)
	n := len(out) - tagSize
	return out[:n:n], out[n:]
}

// openParts authenticates and decrypts; the sizes are checked here so that no input can
// reach the panics of cipher.AEAD.Open.
func openParts(aead cipher.AEAD, iv, ct, tag, ad []byte) ([]byte, error) {
	if len(iv) != nonceSize {
		return nil, fmt.Errorf("%w: iv is not %d bytes", ErrDecrypt, nonceSize)
	}
	if len(tag) != tagSize {
		return nil, fmt.Errorf("%w: tag is not %d bytes", ErrDecrypt, tagSize)
	}
	sealed := make([]byte, 0, len(ct)+len(tag))
	sealed = append(append(sealed, ct...), tag...)
	plaintext, err := aead.Open(nil, iv, sealed, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	return plaintext, nil
}

// parsedValue is a stored value split into its parts; the sizes of iv and tag are checked.
type parsedValue struct {
	version     int
	iv, ct, tag []byte
}

func formatValue(version int, iv, ct, tag []byte) string {
	return "v" + strconv.Itoa(version) + ":" + b64.EncodeToString(iv) + ":" + b64.EncodeToString(ct) + ":" + b64.EncodeToString(tag)
}

// parseValue accepts exactly the strings formatValue produces (for some version >= 1, a
// 12-byte iv and a 16-byte tag) and nothing else, so every stored value has one spelling.
func parseValue(value string) (parsedValue, error) {
	parts := strings.Split(value, ":")
	if len(parts) != 4 {
		return parsedValue{}, fmt.Errorf("%w: not four ':'-separated parts", ErrDecrypt)
	}
	version, ok := parseVersion(parts[0])
	if !ok {
		return parsedValue{}, fmt.Errorf("%w: malformed key version", ErrDecrypt)
	}
	var raw [3][]byte
	for i, s := range parts[1:] {
		b, ok := decodePart(s)
		if !ok {
			return parsedValue{}, fmt.Errorf("%w: malformed base64url part", ErrDecrypt)
		}
		raw[i] = b
	}
	if len(raw[0]) != nonceSize {
		return parsedValue{}, fmt.Errorf("%w: iv is not %d bytes", ErrDecrypt, nonceSize)
	}
	if len(raw[2]) != tagSize {
		return parsedValue{}, fmt.Errorf("%w: tag is not %d bytes", ErrDecrypt, tagSize)
	}
	return parsedValue{version: version, iv: raw[0], ct: raw[1], tag: raw[2]}, nil
}

// parseVersion accepts "v" followed by a decimal integer >= 1 without sign or leading zero.
func parseVersion(s string) (int, bool) {
	digits, ok := strings.CutPrefix(s, "v")
	if !ok || digits == "" || digits[0] == '0' || len(digits) > 9 {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.Atoi(digits)
	if err != nil {
		return 0, false
	}
	return v, true
}

// decodePart decodes unpadded base64url, refusing anything outside the alphabet (the
// standard decoder silently skips CR and LF, and '=' is padding).
func decodePart(s string) ([]byte, bool) {
	// The decoder refuses every byte outside the alphabet but skips CR and LF.
	if strings.IndexByte(s, '\r') >= 0 || strings.IndexByte(s, '\n') >= 0 {
		return nil, false
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return b, true
}

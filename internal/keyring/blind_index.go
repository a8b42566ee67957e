package keyring

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// blindInfoPrefix is the HKDF info prefix of blind-index keys; each purpose gets its own
// key, so an index of one kind of value can't be matched against an index of another.
const blindInfoPrefix = "vitalnexa/blind-index/v1/"

// BlindIndex returns HMAC-SHA256 of value under a key derived (HKDF-SHA256) from the
// blind-index key with an info string naming the purpose (e.g. "email",
// "test_result.code"). It is deterministic for a given keyring, purpose and value, always
// 32 bytes, and independent of the data-key versions, so it survives key rotation. Callers
// normalise value first (NormalizeEmail for emails).
func (k *Keyring) BlindIndex(purpose string, value []byte) []byte {
	mac := hmac.New(sha256.New, k.blindIndexKey(purpose))
	mac.Write(value)
	return mac.Sum(nil)
}

func (k *Keyring) blindIndexKey(purpose string) []byte {
	if key, ok := k.blindKeys.Load(purpose); ok {
		return key.([]byte)
	}
	key, err := hkdf.Key(sha256.New, k.blindKey, nil, blindInfoPrefix+purpose, KeySize)
	if err != nil {
		// Unreachable: 32 bytes is far below HKDF-SHA256's 255*32-byte limit and the
		// secret is a checked 32-byte key.
		panic("keyring: blind-index key derivation failed")
	}
	actual, _ := k.blindKeys.LoadOrStore(purpose, key)
	return actual.([]byte)
}

// NormalizeEmail returns the form of an email address used for its blind index: surrounding
// Unicode white space trimmed, Unicode full case folding (so "ß" matches "ss" and "K"
// (Kelvin) matches "k"), then NFC, so composed and decomposed accents match. It does not
// validate the address and does not apply provider rules (dots, "+tags").
func NormalizeEmail(s string) string {
	s = strings.TrimFunc(s, unicode.IsSpace)
	// A Caser is stateful and must not be shared between goroutines, hence one per call.
	s = cases.Fold().String(s)
	return norm.NFC.String(s)
}

package keyring

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Wrapper wraps data keys with the master key (envelope encryption). aad binds a wrapped
// key to where it is stored (purpose and version): Unwrap with a different aad fails.
// Unwrap failures wrap ErrDecrypt. Implementations are safe for concurrent use; a KMS
// implementation (gocloud.dev/secrets) will sit behind the same interface.
type Wrapper interface {
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Unwrap(ctx context.Context, ciphertext, aad []byte) ([]byte, error)
}

// NewLocalWrapper returns a Wrapper that seals with AES-256-GCM under masterKey, which must
// be exactly 32 bytes (it is copied). The wrapped form is nonce(12) || ciphertext || tag(16)
// with a random nonce per Wrap.
func NewLocalWrapper(masterKey []byte) (Wrapper, error) {
	if len(masterKey) != KeySize {
		return nil, fmt.Errorf("keyring: master key is %d bytes, want %d", len(masterKey), KeySize)
	}
	aead, err := newAEAD(masterKey)
	if err != nil {
		return nil, fmt.Errorf("keyring: master key: %w", err)
	}
	return &localWrapper{aead: aead}, nil
}

type localWrapper struct{ aead cipher.AEAD }

func (w *localWrapper) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("keyring: wrap: nonce: %w", err)
	}
	return w.aead.Seal(out, out[:nonceSize], plaintext, aad), nil
}

func (w *localWrapper) Unwrap(ctx context.Context, ciphertext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(ciphertext) < nonceSize+tagSize {
		return nil, fmt.Errorf("%w: wrapped key too short", ErrDecrypt)
	}
	plaintext, err := w.aead.Open(nil, ciphertext[:nonceSize], ciphertext[nonceSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key does not authenticate (wrong master key or aad)", ErrDecrypt)
	}
	return plaintext, nil
}

// String keeps the master key out of formatted output.
func (w *localWrapper) String() string { return "keyring.localWrapper{master key: redacted}" }

// GoString keeps %#v from printing the key schedule.
func (w *localWrapper) GoString() string { return w.String() }

// ParseMasterKey decodes a master key given as base64 — standard or URL alphabet, padded or
// not — of exactly 32 bytes, ignoring surrounding white space (a trailing newline from a
// file). A key of all zero bytes is refused as an obvious placeholder. The error never
// contains the input.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("keyring: master key is empty")
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("keyring: master key must be base64 of exactly 32 bytes")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		key, err := enc.Strict().DecodeString(s)
		if err != nil {
			continue
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("keyring: master key decodes to %d bytes, want %d", len(key), KeySize)
		}
		if allZero(key) {
			return nil, errors.New("keyring: master key is all zero bytes")
		}
		return key, nil
	}
	return nil, errors.New("keyring: master key must be base64 of exactly 32 bytes")
}

func allZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}

// GenerateKey returns 32 bytes from crypto/rand, for a new data, blind-index or master key.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keyring: generate key: %w", err)
	}
	return key, nil
}

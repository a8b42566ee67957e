package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// opaqueTokenBytes is the entropy of an opaque token: 256 bits.
const opaqueTokenBytes = 32

// NewOpaqueToken returns a fresh random token for refresh tokens and email verification links:
// 32 bytes from crypto/rand as base64url without padding (43 characters, safe in URLs and
// cookies). Store only HashToken of it.
func NewOpaqueToken() (string, error) {
	b := make([]byte, opaqueTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken returns SHA-256 of the token string, the form in which opaque tokens are stored
// and looked up. A plain hash suffices (no salt, no bcrypt) because the token carries 256 bits
// of entropy; it is deterministic so the database can find the row by it.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// NextRefreshToken derives the successor of a refresh token: base64url(HMAC-SHA256(key,
// token)). Deriving it, rather than drawing it at random, lets the server hand the same
// successor to a client that presents the same token twice within a few seconds (two tabs)
// without ever storing a token in a form that could be replayed. key is a server secret of
// at least 32 bytes; the successor is as unpredictable as the token without it.
func NextRefreshToken(key []byte, token string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("vitalnexa refresh successor\x00"))
	m.Write([]byte(token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

package auth

import (
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

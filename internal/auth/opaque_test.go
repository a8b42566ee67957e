package auth

import (
	"encoding/base64"
	"encoding/hex"
	"testing"
)

func TestNewOpaqueToken(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for range 1000 {
		tok, err := NewOpaqueToken()
		if err != nil {
			t.Fatalf("NewOpaqueToken: %v", err)
		}
		if got, want := len(tok), 43; got != want {
			t.Fatalf("len(token) = %d, want %d", got, want)
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(tok)
		if err != nil {
			t.Fatalf("token is not unpadded base64url: %v", err)
		}
		if got, want := len(raw), 32; got != want {
			t.Fatalf("token carries %d bytes, want %d", got, want)
		}
		// A repeat in 1000 draws of 256 bits means the randomness is broken.
		if seen[tok] {
			t.Fatalf("NewOpaqueToken repeated a token")
		}
		seen[tok] = true
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		token string
		want  string
	}{
		// FIPS 180-2 SHA-256 test vectors: the stored form must be plain SHA-256 so that any
		// component (or an operator with psql) computes the same lookup key.
		{"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, want := hex.EncodeToString(HashToken(tt.token)), tt.want; got != want {
				t.Fatalf("HashToken(%q) = %s, want %s", tt.token, got, want)
			}
		})
	}
	a, err := NewOpaqueToken()
	if err != nil {
		t.Fatalf("NewOpaqueToken: %v", err)
	}
	// The database holds only hashes: the hash must differ from the token and be stable.
	if got, want := string(HashToken(a)), string(HashToken(a)); got != want {
		t.Fatalf("HashToken is not deterministic")
	}
	if string(HashToken(a)) == a {
		t.Fatalf("HashToken returned the token itself")
	}
}

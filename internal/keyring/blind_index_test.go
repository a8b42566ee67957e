package keyring

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

func TestBlindIndex(t *testing.T) {
	t.Parallel()
	keys, blind := MustKeys(t, 2)
	k := MustNew(t, keys, 2, blind)
	same := MustNew(t, keys, 2, blind)
	// Rotating data keys must not change any blind index, or lookups break after rotation.
	rotatedKeys, _ := MustKeys(t, 3)
	rotated := MustNew(t, rotatedKeys, 3, blind)
	otherBlind := MustNew(t, keys, 2, MustGenerateKey(t))

	value := []byte("alice@example.com")
	idx := k.BlindIndex("email", value)

	t.Run("known answer", func(t *testing.T) {
		key, err := hkdf.Key(sha256.New, blind, nil, "vitalnexa/blind-index/v1/email", 32)
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write(value)
		if want := mac.Sum(nil); !bytes.Equal(idx, want) {
			t.Fatalf("BlindIndex = %x, want HMAC-SHA256 under the HKDF-derived key %x", idx, want)
		}
	})

	tests := []struct {
		name      string
		got       []byte
		wantEqual bool
	}{
		{"deterministic", k.BlindIndex("email", value), true},
		{"same keys, another keyring", same.BlindIndex("email", value), true},
		{"survives data-key rotation", rotated.BlindIndex("email", value), true},
		// An index for one purpose must not match an index of the same bytes for another.
		{"other purpose", k.BlindIndex("test_result.code", value), false},
		{"other value", k.BlindIndex("email", []byte("bob@example.com")), false},
		{"other blind-index key", otherBlind.BlindIndex("email", value), false},
		// Purposes that would collide if the key were HMAC'd over purpose||value.
		{"purpose/value boundary", k.BlindIndex("emai", []byte("lalice@example.com")), false},
		// The index must not be a plain hash anyone can compute without the key.
		{"not a bare SHA-256", func() []byte { s := sha256.Sum256(value); return s[:] }(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := len(tt.got), 32; got != want {
				t.Fatalf("index is %d bytes, want %d", got, want)
			}
			if got, want := bytes.Equal(tt.got, idx), tt.wantEqual; got != want {
				t.Fatalf("equal to the reference index = %v, want %v", got, want)
			}
		})
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	t.Run("canonical form", func(t *testing.T) {
		if got, want := NormalizeEmail("  Alice@Example.COM "), "alice@example.com"; got != want {
			t.Fatalf("NormalizeEmail = %q, want %q", got, want)
		}
	})
	tests := []struct {
		name      string
		a, b      string
		wantEqual bool
	}{
		{"case and surrounding spaces", "  Alice@Example.COM ", "alice@example.com", true},
		{"unicode white space", "\u00a0\tAlice@example.com\u2003\n", "alice@example.com", true},
		// Composed and decomposed accents are the same address to a person.
		{"NFC vs NFD", "Jos\u00e9@example.com", "Jose\u0301@example.com", true},
		{"upper-case decomposed", "JOSE\u0301@EXAMPLE.COM", "jos\u00e9@example.com", true},
		// Full case folding: ß folds to ss.
		{"German sharp s", "Straße@example.de", "STRASSE@example.de", true},
		{"capital sharp s", "STRAẞE@example.de", "strasse@example.de", true},
		// The Kelvin sign folds to k, so it cannot register a look-alike of an existing address.
		{"Kelvin sign", "\u212aate@example.com", "kate@example.com", true},
		{"other domain", "alice@example.com", "alice@example.org", false},
		{"other local part", "alice@example.com", "alicia@example.com", false},
		// No provider-specific rules: dots and tags are part of the address.
		{"dot in local part", "a.lice@example.com", "alice@example.com", false},
		{"plus tag", "alice+x@example.com", "alice@example.com", false},
		// Accents are not stripped.
		{"accent kept", "jos\u00e9@example.com", "jose@example.com", false},
		// Only surrounding white space is trimmed.
		{"inner space kept", "al ice@example.com", "alice@example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			na, nb := NormalizeEmail(tt.a), NormalizeEmail(tt.b)
			if got, want := na == nb, tt.wantEqual; got != want {
				t.Fatalf("NormalizeEmail(%q) = %q, NormalizeEmail(%q) = %q; equal = %v, want %v", tt.a, na, tt.b, nb, got, want)
			}
			if again := NormalizeEmail(na); again != na {
				t.Fatalf("not idempotent: %q then %q", na, again)
			}
		})
	}
}

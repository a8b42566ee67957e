package keyring

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func MustLocalWrapper(tb testing.TB, master []byte) Wrapper {
	tb.Helper()
	w, err := NewLocalWrapper(master)
	if err != nil {
		tb.Fatalf("NewLocalWrapper: %v", err)
	}
	return w
}

func TestLocalWrapper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master := MustGenerateKey(t)
	w := MustLocalWrapper(t, master)
	dataKey := MustGenerateKey(t)
	aad := []byte("vitalnexa/encryption_keys/data/1")

	wrapped, err := w.Wrap(ctx, dataKey, aad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	t.Run("round trip", func(t *testing.T) {
		got, err := w.Unwrap(ctx, wrapped, aad)
		if err != nil {
			t.Fatalf("Unwrap: %v", err)
		}
		if !bytes.Equal(got, dataKey) {
			t.Fatalf("Unwrap returned another key")
		}
	})
	t.Run("layout is nonce||ciphertext||tag under AES-256-GCM", func(t *testing.T) {
		if got, want := len(wrapped), 12+len(dataKey)+16; got != want {
			t.Fatalf("wrapped length %d, want %d", got, want)
		}
		block, _ := aes.NewCipher(master)
		gcm, _ := cipher.NewGCM(block)
		got, err := gcm.Open(nil, wrapped[:12], wrapped[12:], aad)
		if err != nil || !bytes.Equal(got, dataKey) {
			t.Fatalf("independent open failed: %v", err)
		}
		if bytes.Contains(wrapped, dataKey) {
			t.Fatalf("wrapped form contains the data key")
		}
	})
	t.Run("fresh nonce per wrap", func(t *testing.T) {
		again, err := w.Wrap(ctx, dataKey, aad)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(again[:12], wrapped[:12]) {
			t.Fatalf("two wraps used the same nonce")
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := w.Wrap(cctx, dataKey, aad); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wrap with cancelled context: %v", err)
		}
		if _, err := w.Unwrap(cctx, wrapped, aad); !errors.Is(err, context.Canceled) {
			t.Fatalf("Unwrap with cancelled context: %v", err)
		}
	})

	otherMaster := MustLocalWrapper(t, MustGenerateKey(t))
	tampered := bytes.Clone(wrapped)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name    string
		w       Wrapper
		wrapped []byte
		aad     []byte
	}{
		// A wrapped key copied into another row (another version or purpose).
		{"wrong aad", w, wrapped, []byte("vitalnexa/encryption_keys/data/2")},
		{"missing aad", w, wrapped, nil},
		// A server started with another master key must not get a key out.
		{"wrong master key", otherMaster, wrapped, aad},
		// A modified wrapped key in the database.
		{"tampered", w, tampered, aad},
		// Truncated blobs must fail cleanly rather than panic.
		{"truncated", w, wrapped[:len(wrapped)-1], aad},
		{"shorter than nonce and tag", w, wrapped[:27], aad},
		{"empty", w, nil, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.w.Unwrap(ctx, tt.wrapped, tt.aad)
			if err == nil {
				t.Fatalf("Unwrap succeeded")
			}
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("error %v does not wrap ErrDecrypt", err)
			}
			if got != nil {
				t.Fatalf("Unwrap returned bytes with an error")
			}
		})
	}
}

func TestNewLocalWrapperRejectsBadKeys(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		t.Run(fmt.Sprintf("%d bytes", n), func(t *testing.T) {
			t.Parallel()
			// AES-128/192 keys are valid AES keys but below the required strength.
			if w, err := NewLocalWrapper(make([]byte, n)); err == nil {
				t.Fatalf("NewLocalWrapper accepted a %d-byte key: %v", n, w)
			}
		})
	}
}

func TestLocalWrapperDoesNotPrintKey(t *testing.T) {
	t.Parallel()
	master := MustGenerateKey(t)
	w := MustLocalWrapper(t, master)
	for _, out := range []string{fmt.Sprintf("%v", w), fmt.Sprintf("%+v", w), fmt.Sprintf("%#v", w)} {
		if strings.Contains(out, "aead") || strings.Contains(out, fmt.Sprint(master)) {
			t.Fatalf("wrapper formats as %q", out)
		}
	}
}

func TestParseMasterKey(t *testing.T) {
	t.Parallel()
	// 0xfb 0xef 0xff encodes as "++//" (std) and "--__" (url), so the alphabets differ.
	key := bytes.Repeat([]byte{0xfb, 0xef, 0xff}, 11)[:32]
	std := base64.StdEncoding.EncodeToString(key)
	url := base64.URLEncoding.EncodeToString(key)
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"std padded", std, false},
		{"std unpadded", strings.TrimRight(std, "="), false},
		{"url padded", url, false},
		{"url unpadded", strings.TrimRight(url, "="), false},
		{"trailing newline from a file", std + "\n", false},
		{"empty", "", true},
		{"white space only", " \n", true},
		// A 128-bit key passed where 256 bits are required.
		{"16 bytes", base64.StdEncoding.EncodeToString(key[:16]), true},
		{"31 bytes", base64.StdEncoding.EncodeToString(key[:31]), true},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(bytes.Clone(key), 1)), true},
		// Hex is not base64 of 32 bytes, though it is 32 bytes of text.
		{"hex", fmt.Sprintf("%x", key), true},
		{"mixed alphabets", "+-" + std[2:], true},
		{"not base64", "not a key!", true},
		{"newline inside", std[:20] + "\n" + std[20:], true},
		// The example all-zero key from documentation must not be usable.
		{"all zero", base64.StdEncoding.EncodeToString(make([]byte, 32)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMasterKey(tt.in)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("ParseMasterKey error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if s := strings.TrimSpace(tt.in); len(s) >= 4 && strings.Contains(err.Error(), s) {
					t.Fatalf("error %q echoes the input", err)
				}
				return
			}
			if !bytes.Equal(got, key) {
				t.Fatalf("ParseMasterKey decoded other bytes")
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	a, b := MustGenerateKey(t), MustGenerateKey(t)
	if got, want := len(a), 32; got != want {
		t.Fatalf("GenerateKey returned %d bytes, want %d", got, want)
	}
	if bytes.Equal(a, b) {
		t.Fatalf("two generated keys are equal")
	}
}

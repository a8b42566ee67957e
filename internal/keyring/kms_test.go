package keyring

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"gocloud.dev/secrets/localsecrets"
)

// MustBase64KeyURL returns a base64key:// URL holding a new random key, and the key's text.
func MustBase64KeyURL(tb testing.TB) (string, string) {
	tb.Helper()
	k, err := localsecrets.NewRandomKey()
	if err != nil {
		tb.Fatal(err)
	}
	s := base64.URLEncoding.EncodeToString(k[:])
	return "base64key://" + s, s
}

func MustKMSWrapper(tb testing.TB, url string) Wrapper {
	tb.Helper()
	w, err := OpenKMSWrapper(context.Background(), url)
	if err != nil {
		tb.Fatalf("OpenKMSWrapper: %v", err)
	}
	tb.Cleanup(func() { w.(io.Closer).Close() })
	return w
}

func TestKMSWrapper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, _ := MustBase64KeyURL(t)
	w := MustKMSWrapper(t, url)
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
			t.Fatal("Unwrap returned another key")
		}
	})
	t.Run("another wrapper on the same URL unwraps", func(t *testing.T) {
		got, err := MustKMSWrapper(t, url).Unwrap(ctx, wrapped, aad)
		if err != nil || !bytes.Equal(got, dataKey) {
			t.Fatalf("Unwrap: %v", err)
		}
	})
	t.Run("fresh ciphertext per wrap, never holding the key", func(t *testing.T) {
		again, err := w.Wrap(ctx, dataKey, aad)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(again, wrapped) {
			t.Fatal("two wraps of one key are equal")
		}
		if bytes.Contains(wrapped, dataKey) {
			t.Fatal("the wrapped form contains the key")
		}
	})

	rejects := []struct {
		name       string
		w          Wrapper
		ciphertext []byte
		aad        []byte
	}{
		// Attack: copy a wrapped key into another version's row.
		{"other version", w, wrapped, []byte("vitalnexa/encryption_keys/data/2")},
		// Attack: use a data key as the blind-index key.
		{"other purpose", w, wrapped, []byte("vitalnexa/encryption_keys/blind_index/1")},
		{"empty aad", w, wrapped, nil},
		// A database restored with another master key.
		{"wrong master key", MustKMSWrapper(t, func() string { u, _ := MustBase64KeyURL(t); return u }()), wrapped, aad},
		{"flipped bit", w, flipLastBit(wrapped), aad},
		{"truncated", w, wrapped[:len(wrapped)-1], aad},
		{"empty", w, nil, aad},
		// Attack: anything else the same KMS key encrypted, offered as a wrapped key.
		{"plain KMS ciphertext", w, mustKeeperEncrypt(t, url, dataKey), aad},
		{"plain KMS ciphertext with a digest of another aad", w, mustKeeperEncrypt(t, url,
			append(append(append([]byte{}, kmsMagic...), aadDigest([]byte("other"))...), dataKey...)), aad},
	}
	for _, tc := range rejects {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			got, err := tc.w.Unwrap(ctx, tc.ciphertext, tc.aad)
			if err == nil {
				t.Fatalf("Unwrap succeeded (%d bytes)", len(got))
			}
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("error %v does not wrap ErrDecrypt", err)
			}
		})
	}

	t.Run("local and KMS wrappings are not interchangeable", func(t *testing.T) {
		local := MustLocalWrapper(t, MustGenerateKey(t))
		lw, err := local.Wrap(ctx, dataKey, aad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Unwrap(ctx, lw, aad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("KMS unwrap of a local wrapping: %v", err)
		}
		if _, err := local.Unwrap(ctx, wrapped, aad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("local unwrap of a KMS wrapping: %v", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := w.Wrap(cctx, dataKey, aad); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wrap: %v", err)
		}
		if _, err := w.Unwrap(cctx, wrapped, aad); !errors.Is(err, context.Canceled) {
			t.Fatalf("Unwrap: %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c, err := OpenKMSWrapper(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.(io.Closer).Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wrap(ctx, dataKey, aad); err == nil {
			t.Fatal("Wrap after Close succeeded")
		}
		if _, err := c.Unwrap(ctx, wrapped, aad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Unwrap after Close: %v", err)
		}
	})
}

func TestOpenKMSWrapperRejectsBadURLs(t *testing.T) {
	t.Parallel()
	_, key := MustBase64KeyURL(t)
	short := base64.URLEncoding.EncodeToString([]byte("sixteen-byte-key"))
	tests := []struct {
		name, url string
		secret    string // must not appear in the error
	}{
		{"empty", "", ""},
		{"not a URL", "::" + key, key},
		{"bare key", key, key},
		{"other scheme", "https://kms.example/" + key, key},
		{"file scheme", "file:///etc/" + key, key},
		{"opaque", "awskms:alias/" + key, key},
		{"no key named", "gcpkms://", ""},
		// base64key:// alone would make a new random master key at every start.
		{"base64key without a key", "base64key://", ""},
		{"base64key with a short key", "base64key://" + short, short},
		{"base64key with a standard-alphabet key", "base64key://" + strings.NewReplacer("-", "+", "_", "/").Replace(key) + "+/", key[:20]},
		{"base64key with a query", "base64key://" + key + "?token=hunter22", key},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := OpenKMSWrapper(context.Background(), tc.url)
			if err == nil {
				w.(io.Closer).Close()
				t.Fatal("OpenKMSWrapper succeeded")
			}
			if CheckKMSURL(tc.url) == nil && !strings.HasPrefix(tc.url, "base64key://") {
				t.Fatal("CheckKMSURL accepts what OpenKMSWrapper refuses")
			}
			for _, leak := range []string{tc.secret, "hunter22"} {
				if leak != "" && strings.Contains(err.Error(), leak) {
					t.Fatalf("error quotes the URL: %v", err)
				}
			}
		})
	}
}

func TestOpenKMSWrapperRedactsDriverErrors(t *testing.T) {
	if os.Getenv("VAULT_ADDR") != "" || os.Getenv("VAULT_SERVER_URL") != "" {
		t.Skip("a Vault server is configured: opening would succeed")
	}
	// The hashivault driver quotes the whole URL when no server is configured.
	_, err := OpenKMSWrapper(context.Background(), "hashivault://vn-key-name-that-is-private")
	if err == nil {
		t.Fatal("opened a Vault keeper without a server")
	}
	if strings.Contains(err.Error(), "vn-key-name-that-is-private") {
		t.Fatalf("error quotes the URL: %v", err)
	}
	if !strings.Contains(err.Error(), "hashivault") {
		t.Fatalf("error does not name the KMS: %v", err)
	}
}

func TestURLRedactor(t *testing.T) {
	t.Parallel()
	raw := "azurekeyvault://user:pa55word@vault.example/keys/k?token=t0k3n&x=1"
	u, err := parseKMSURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := urlRedactor(raw, u)(fmt.Errorf("open %q: host %s, path %s, token %s, pass %s", raw, u.Host, u.Path, "t0k3n", "pa55word"))
	for _, leak := range []string{"vault.example", "/keys/k", "t0k3n", "pa55word"} {
		if strings.Contains(got, leak) {
			t.Fatalf("redacted message %q still holds %q", got, leak)
		}
	}
}

func TestKMSWrapperDoesNotPrintKey(t *testing.T) {
	t.Parallel()
	url, key := MustBase64KeyURL(t)
	w := MustKMSWrapper(t, url)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("wrapper", "w", w)
	for _, s := range []string{fmt.Sprint(w), fmt.Sprintf("%v %+v %#v %s", w, w, w, w), logged.String()} {
		if strings.Contains(s, key) || strings.Contains(s, key[:12]) {
			t.Fatalf("formatted wrapper shows the key: %s", s)
		}
	}
	// A wrong-key failure names neither key.
	other, _ := MustBase64KeyURL(t)
	wrapped, err := MustKMSWrapper(t, other).Wrap(context.Background(), MustGenerateKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Unwrap(context.Background(), wrapped, nil)
	if err == nil || strings.Contains(err.Error(), key[:12]) || strings.Contains(err.Error(), strings.TrimPrefix(other, "base64key://")[:12]) {
		t.Fatalf("Unwrap with the wrong key: %v", err)
	}
}

func mustKeeperEncrypt(tb testing.TB, url string, plaintext []byte) []byte {
	tb.Helper()
	k, err := localsecrets.Base64Key(strings.TrimPrefix(url, "base64key://"))
	if err != nil {
		tb.Fatal(err)
	}
	keeper := localsecrets.NewKeeper(k)
	defer keeper.Close()
	out, err := keeper.Encrypt(context.Background(), plaintext)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func flipLastBit(b []byte) []byte {
	out := bytes.Clone(b)
	out[len(out)-1] ^= 1
	return out
}

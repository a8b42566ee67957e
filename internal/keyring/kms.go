package keyring

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"

	"gocloud.dev/gcerrors"
	"gocloud.dev/secrets"

	// The KMS drivers that VITALNEXA_MASTER_KEY_URL may name. Each registers its scheme with
	// secrets.DefaultURLMux and reads its credentials the way its cloud's SDK does (AWS_*,
	// GOOGLE_APPLICATION_CREDENTIALS, AZURE_*, VAULT_ADDR/VAULT_TOKEN).
	_ "gocloud.dev/secrets/awskms"
	_ "gocloud.dev/secrets/azurekeyvault"
	_ "gocloud.dev/secrets/gcpkms"
	_ "gocloud.dev/secrets/hashivault"
	_ "gocloud.dev/secrets/localsecrets"
)

// KMSSchemes are the URL schemes OpenKMSWrapper accepts: AWS KMS, Google Cloud KMS, Azure
// Key Vault, HashiCorp Vault transit, and base64key (a local key inside the URL, for tests).
var KMSSchemes = []string{"awskms", "gcpkms", "azurekeyvault", "hashivault", "base64key"}

// kmsMagic starts every plaintext handed to the KMS, so that a ciphertext the same KMS key
// made for something else is not taken for a wrapped data key, and the format can change.
var kmsMagic = []byte("vnk1")

// CheckKMSURL tells whether rawURL is a KMS URL that OpenKMSWrapper would try to open: one
// of KMSSchemes, in scheme://… form, and for base64key with a key in it (an empty one would
// make a new random master key at each start). The error never quotes the URL, which can
// hold a key or a token.
func CheckKMSURL(rawURL string) error {
	_, err := parseKMSURL(rawURL)
	return err
}

func parseKMSURL(rawURL string) (*url.URL, error) {
	want := strings.Join(KMSSchemes, "://, ") + "://"
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		return nil, fmt.Errorf("keyring: the KMS URL is not a valid URL (want %s)", want)
	}
	if !slices.Contains(KMSSchemes, u.Scheme) {
		return nil, fmt.Errorf("keyring: the KMS URL must start with one of %s", want)
	}
	if u.Scheme == "base64key" && u.Host == "" {
		return nil, errors.New("keyring: the base64key URL must hold the key, base64url of 32 bytes (base64key:// alone makes a new random key)")
	}
	if u.Opaque != "" || (u.Host == "" && strings.Trim(u.Path, "/") == "") {
		return nil, fmt.Errorf("keyring: the %s URL names no key (want %s://…)", u.Scheme, u.Scheme)
	}
	return u, nil
}

// OpenKMSWrapper returns a Wrapper whose master key lives in a KMS, opened through
// gocloud.dev/secrets from rawURL (see KMSSchemes). Close it when done (it implements
// io.Closer). Opening checks the URL and builds the client; the KMS itself is first called
// by Wrap or Unwrap. Errors never contain the URL or key material.
//
// KMS Encrypt and Decrypt take no additional data, so the wrapper binds aad itself: the KMS
// encrypts "vnk1" || SHA-256(aad) || plaintext, and Unwrap refuses a result whose digest is
// not that of its aad. A wrapped key moved to another purpose or version does not unwrap.
func OpenKMSWrapper(ctx context.Context, rawURL string) (Wrapper, error) {
	u, err := parseKMSURL(rawURL)
	if err != nil {
		return nil, err
	}
	redact := urlRedactor(rawURL, u)
	keeper, err := secrets.OpenKeeper(ctx, strings.TrimSpace(rawURL))
	if err != nil {
		return nil, fmt.Errorf("keyring: open the %s KMS: %s", u.Scheme, redact(err))
	}
	return &kmsWrapper{keeper: keeper, scheme: u.Scheme, redact: redact}, nil
}

type kmsWrapper struct {
	keeper *secrets.Keeper
	scheme string
	redact func(error) string
}

func aadDigest(aad []byte) []byte {
	h := sha256.New()
	h.Write([]byte("vitalnexa/kms-wrap/v1\x00"))
	h.Write(aad)
	return h.Sum(nil)
}

func (w *kmsWrapper) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	msg := make([]byte, 0, len(kmsMagic)+sha256.Size+len(plaintext))
	msg = append(append(append(msg, kmsMagic...), aadDigest(aad)...), plaintext...)
	defer clear(msg)
	out, err := w.keeper.Encrypt(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("keyring: wrap with the %s KMS (%s): %s", w.scheme, gcerrors.Code(err), w.redact(err))
	}
	return out, nil
}

func (w *kmsWrapper) Unwrap(ctx context.Context, ciphertext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	msg, err := w.keeper.Decrypt(ctx, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: the %s KMS does not decrypt the wrapped key (%s): %s", ErrDecrypt, w.scheme, gcerrors.Code(err), w.redact(err))
	}
	defer clear(msg)
	head := len(kmsMagic) + sha256.Size
	if len(msg) < head || !bytes.Equal(msg[:len(kmsMagic)], kmsMagic) {
		return nil, fmt.Errorf("%w: the KMS ciphertext is not a wrapped key", ErrDecrypt)
	}
	if subtle.ConstantTimeCompare(msg[len(kmsMagic):head], aadDigest(aad)) != 1 {
		return nil, fmt.Errorf("%w: wrapped key does not authenticate (wrong aad)", ErrDecrypt)
	}
	return bytes.Clone(msg[head:]), nil
}

// Close releases the KMS client.
func (w *kmsWrapper) Close() error {
	if err := w.keeper.Close(); err != nil {
		return fmt.Errorf("keyring: close the %s KMS: %s", w.scheme, w.redact(err))
	}
	return nil
}

// String names the KMS kind only: the URL can hold a key (base64key) or name one.
func (w *kmsWrapper) String() string {
	return "keyring.kmsWrapper{scheme: " + w.scheme + ", url: redacted}"
}

// GoString keeps %#v from printing the URL or the client.
func (w *kmsWrapper) GoString() string { return w.String() }

// LogValue keeps slog from printing the URL or the client.
func (w *kmsWrapper) LogValue() slog.Value { return slog.StringValue(w.String()) }

// urlRedactor returns a function giving an error's text with every part of the URL that
// could be secret replaced: drivers quote the URL in their errors, and a base64key URL is
// the key itself.
func urlRedactor(rawURL string, u *url.URL) func(error) string {
	var parts []string
	add := func(s string) {
		if len(s) >= 4 {
			parts = append(parts, s, url.PathEscape(s), url.QueryEscape(s))
		}
	}
	add(rawURL)
	add(strings.TrimSpace(rawURL))
	add(u.String())
	add(u.Redacted())
	if _, rest, ok := strings.Cut(rawURL, "://"); ok {
		add(rest)
	}
	add(u.Host)
	add(u.Host + u.Path)
	add(u.Path)
	add(u.EscapedPath())
	add(u.RawQuery)
	add(u.Fragment)
	if u.User != nil {
		add(u.User.String())
		add(u.User.Username())
		if p, ok := u.User.Password(); ok {
			add(p)
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	// Longest first, so that a part never leaves a piece of a longer one behind.
	slices.SortFunc(parts, func(a, b string) int { return len(b) - len(a) })
	return func(err error) string {
		s := err.Error()
		for _, p := range parts {
			s = strings.ReplaceAll(s, p, "[redacted]")
		}
		return s
	}
}

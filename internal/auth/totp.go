package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// TOTP (RFC 6238) as authenticator apps expect it: HMAC-SHA1, 6 digits, 30-second steps.
//
// It is written against the standard library rather than github.com/pquerna/otp: the part
// that matters here, the RFC 4226 truncation, is a dozen lines pinned by the RFC's own test
// vectors, while the library's validator does not say which step matched (so it cannot refuse
// a replayed code), trims spaces the caller sent, and its root package links a QR-code
// renderer into the binary that the service does not use.
const (
	totpSecretBytes = 20 // 160 bits, RFC 4226's recommended secret length
	totpMinSecret   = 16 // RFC 4226 §4 R6: at least 128 bits
	totpDigits      = 6
	totpPeriod      = 30 // seconds
	totpSkew        = 1  // steps accepted either side of now: phone clocks drift
)

// totpSecretEncoding is how secrets appear in otpauth URIs and to users who type them in.
var totpSecretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTOTPSecret returns a fresh 20-byte TOTP secret from crypto/rand. Store it encrypted: it
// is a shared secret, not a hash.
func NewTOTPSecret() ([]byte, error) {
	b := make([]byte, totpSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("auth: random TOTP secret: %w", err)
	}
	return b, nil
}

// TOTPURL returns the otpauth://totp/ URI (Google's Key URI Format) that enrols secret in an
// authenticator app: label "issuer:account", the secret in unpadded base32, and the issuer,
// algorithm (SHA1), digits (6) and period (30) parameters. A colon inside issuer or account is
// escaped so the label stays unambiguous; an empty issuer leaves out the prefix and the
// parameter. The URI contains the secret: show it once, never log it.
func TOTPURL(secret []byte, issuer, account string) string {
	label := escapeLabel(account)
	if issuer != "" {
		label = escapeLabel(issuer) + ":" + label
	}
	// Built by hand because url.Values writes a space as "+", which several apps show as a
	// literal plus sign in the issuer; the keys are fixed and in a stable order.
	q := "secret=" + totpSecretEncoding.EncodeToString(secret)
	if issuer != "" {
		q += "&issuer=" + escapeQuery(issuer)
	}
	q += fmt.Sprintf("&algorithm=SHA1&digits=%d&period=%d", totpDigits, totpPeriod)
	return "otpauth://totp/" + label + "?" + q
}

func escapeLabel(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
}

func escapeQuery(s string) string {
	// QueryEscape writes a literal "+" as "%2B", so every "+" left is a space.
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// VerifyTOTP checks code against secret at time now. It accepts exactly six ASCII digits that
// match the current 30-second step or one step either side (clock skew), compared in constant
// time, and returns the matched step. Steps at or before lastStep — the step of the last code
// this account used, 0 for none — are refused, so an observed code cannot be replayed; the
// caller must store the returned step atomically (compare-and-set on lastStep) before treating
// the code as used. A secret shorter than 128 bits never verifies. When two steps share a code,
// the later one is returned, so the code cannot be used once more in the later step.
func VerifyTOTP(secret []byte, code string, now time.Time, lastStep int64) (step int64, ok bool) {
	if len(secret) < totpMinSecret || !sixDigits(code) {
		return 0, false
	}
	if now.Unix() < 0 {
		return 0, false // before 1970: a broken clock, not a step
	}
	current := now.Unix() / totpPeriod
	for s := current - totpSkew; s <= current+totpSkew; s++ {
		if s < 0 {
			continue
		}
		match := subtle.ConstantTimeCompare([]byte(hotp(secret, uint64(s), totpDigits)), []byte(code)) == 1
		if match && s > lastStep {
			step, ok = s, true
		}
	}
	return step, ok
}

// sixDigits reports whether code is exactly totpDigits ASCII digits: no spaces, signs or
// digits from other scripts, which a lenient parser would turn into a valid number.
func sixDigits(code string) bool {
	if len(code) != totpDigits {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

// hotp is RFC 4226 HOTP with HMAC-SHA1: dynamic truncation to 31 bits, then the low digits,
// zero-padded.
func hotp(secret []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	offset := sum[len(sum)-1] & 0x0f
	value := binary.BigEndian.Uint32(sum[offset:offset+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, value%mod)
}

// Recovery codes: 16 characters of Crockford's base32 alphabet (no i, l, o or u), shown as
// four groups of four. 80 bits each, so that the plain SHA-256 of HashToken — which the
// database needs to look a code up — cannot be reversed by brute force from a stolen table;
// at 60 bits that search is within reach of a rented GPU farm.
const (
	recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	recoveryChars    = 16
	recoveryGroup    = 4
	maxRecoveryCodes = 100
)

// NewRecoveryCodes returns n distinct single-use recovery codes such as
// "7kq2-mz9d-x4hc-0tne", for 1 <= n <= 100. Store only
// HashToken(NormalizeRecoveryCode(code)) of each; show the codes to the user once.
func NewRecoveryCodes(n int) ([]string, error) {
	if n < 1 || n > maxRecoveryCodes {
		return nil, fmt.Errorf("auth: recovery code count %d outside [1, %d]", n, maxRecoveryCodes)
	}
	codes := make([]string, 0, n)
	seen := make(map[string]bool, n)
	raw := make([]byte, recoveryChars)
	for len(codes) < n {
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("auth: random recovery code: %w", err)
		}
		var b strings.Builder
		for i, r := range raw {
			if i > 0 && i%recoveryGroup == 0 {
				b.WriteByte('-')
			}
			// 256 is a multiple of 32: the low five bits of a random byte are uniform.
			b.WriteByte(recoveryAlphabet[r&31])
		}
		code := b.String()
		if seen[code] {
			continue // 2^-80: cannot happen, but two equal codes would be one code
		}
		seen[code] = true
		codes = append(codes, code)
	}
	return codes, nil
}

// NormalizeRecoveryCode returns the canonical form of a recovery code as a user may type it:
// ASCII letters lower-cased, spaces, tabs and dashes dropped, and the look-alikes Crockford's
// alphabet leaves out read as what they resemble (o as 0, i and l as 1). Other characters are
// kept, so input that is not a code stays unequal to every code. Hash the result, never the
// raw input.
func NormalizeRecoveryCode(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch c {
		case ' ', '\t', '-':
			continue
		case 'o':
			c = '0'
		case 'i', 'l':
			c = '1'
		}
		b.WriteByte(c)
	}
	return b.String()
}

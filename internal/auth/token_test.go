package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var (
	testNow     = time.Date(2026, 4, 5, 14, 32, 1, 445_000_000, time.UTC)
	testSecret  = []byte("k1-test-secret-0123456789abcdefABCDEF") // 37 bytes
	testSecret0 = []byte("k0-older-secret-0123456789abcdefABCDEF")
	otherSecret = []byte("attacker-secret-0123456789abcdefABCDEF")
)

const (
	testIssuer   = "https://vitalnexa.test"
	testAudience = "vitalnexa-api"
)

// testTokenOptions are the options every token test starts from, with the clock at at.
func testTokenOptions(at time.Time) TokenOptions {
	return TokenOptions{
		Secrets:    map[string][]byte{"k0": testSecret0, "k1": testSecret},
		CurrentKID: "k1",
		Issuer:     testIssuer,
		Audience:   testAudience,
		Now:        func() time.Time { return at },
	}
}

// MustTokenIssuer returns a TokenIssuer for opts or fails the test.
func MustTokenIssuer(tb testing.TB, opts TokenOptions) *TokenIssuer {
	tb.Helper()
	ti, err := NewTokenIssuer(opts)
	if err != nil {
		tb.Fatalf("NewTokenIssuer: %v", err)
	}
	return ti
}

// MustIssue issues a token or fails the test.
func MustIssue(tb testing.TB, ti *TokenIssuer, userID, sessionID string) string {
	tb.Helper()
	tok, _, err := ti.Issue(userID, sessionID)
	if err != nil {
		tb.Fatalf("Issue: %v", err)
	}
	return tok
}

// validClaims are the claims Issue would write at testNow; rows edit a copy.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIssuer,
		"aud": []string{testAudience},
		"sub": "user-1",
		"sid": "session-1",
		"iat": testNow.Unix(),
		"exp": testNow.Add(DefaultTokenTTL).Unix(),
		"typ": "access",
		"jti": "jti-1",
	}
}

// MustSign signs claims with the jwt library, with a kid header unless kid is nil.
func MustSign(tb testing.TB, method jwt.SigningMethod, key any, kid any, claims jwt.MapClaims) string {
	tb.Helper()
	j := jwt.NewWithClaims(method, claims)
	if kid != nil {
		j.Header["kid"] = kid
	}
	s, err := j.SignedString(key)
	if err != nil {
		tb.Fatalf("SignedString: %v", err)
	}
	return s
}

// handMade builds a JWT from raw header and claims, with sign computing the signature over
// the signing input; the library cannot make some of the shapes an attacker can.
func handMade(tb testing.TB, header, claims map[string]any, sign func(input string) []byte) string {
	tb.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatalf("json.Marshal: %v", err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign(input))
}

func hmacSHA256(key []byte) func(string) []byte {
	return func(input string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(input))
		return m.Sum(nil)
	}
}

// with returns validClaims edited by f.
func with(f func(c jwt.MapClaims)) jwt.MapClaims {
	c := validClaims()
	f(c)
	return c
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	ti := MustTokenIssuer(t, testTokenOptions(testNow))
	tok, exp, err := ti.Issue("user-1", "session-1")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if got, want := exp, testNow.Add(15*time.Minute).Truncate(time.Second); !got.Equal(want) {
		t.Fatalf("expiresAt = %v, want %v", got, want)
	}
	c, err := ti.Parse(tok)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := c.UserID, "user-1"; got != want {
		t.Fatalf("UserID = %q, want %q", got, want)
	}
	if got, want := c.SessionID, "session-1"; got != want {
		t.Fatalf("SessionID = %q, want %q", got, want)
	}
	if got, want := c.ExpiresAt, exp; !got.Equal(want) {
		t.Fatalf("ExpiresAt = %v, want %v", got, want)
	}
	if c.ID == "" {
		t.Fatalf("ID (jti) is empty")
	}
	c2, err := ti.Parse(MustIssue(t, ti, "user-1", "session-1"))
	if err != nil {
		t.Fatalf("Parse(second token): %v", err)
	}
	if c2.ID == c.ID {
		t.Fatalf("two tokens share jti %q; revocation by jti needs unique ids", c.ID)
	}

	// The header and payload are what other services and the revocation list rely on.
	parts := strings.Split(tok, ".")
	var header struct{ Alg, Kid string }
	var payload struct {
		Iss, Sub, Sid, Typ, Jti string
		Aud                     []string
		Iat, Exp                int64
	}
	for i, dst := range []any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("decode part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("unmarshal part %d: %v", i, err)
		}
	}
	for _, f := range []struct{ name, got, want string }{
		{"alg", header.Alg, "HS256"},
		{"kid", header.Kid, "k1"},
		{"iss", payload.Iss, testIssuer},
		{"sub", payload.Sub, "user-1"},
		{"sid", payload.Sid, "session-1"},
		{"typ", payload.Typ, "access"},
		{"jti", payload.Jti, c.ID},
		{"aud", strings.Join(payload.Aud, ","), testAudience},
		{"iat", fmt.Sprint(payload.Iat), fmt.Sprint(testNow.Unix())},
		{"exp", fmt.Sprint(payload.Exp), fmt.Sprint(exp.Unix())},
	} {
		if f.got != f.want {
			t.Fatalf("%s = %q, want %q", f.name, f.got, f.want)
		}
	}
}

func TestTokenSessionIDMayBeEmpty(t *testing.T) {
	t.Parallel()
	ti := MustTokenIssuer(t, testTokenOptions(testNow))
	c, err := ti.Parse(MustIssue(t, ti, "user-1", ""))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := c.SessionID, ""; got != want {
		t.Fatalf("SessionID = %q, want %q", got, want)
	}
}

func TestTokenExpiryBoundary(t *testing.T) {
	t.Parallel()
	tok := MustIssue(t, MustTokenIssuer(t, testTokenOptions(testNow)), "user-1", "s")
	exp := testNow.Add(DefaultTokenTTL).Truncate(time.Second)
	tests := []struct {
		name  string
		at    time.Time
		valid bool
	}{
		{"just issued", testNow, true},
		{"one second before exp", exp.Add(-time.Second), true},
		{"within clock-skew leeway", exp.Add(tokenLeeway - time.Second), true},
		// A stolen token must die on schedule.
		{"past exp and leeway", exp.Add(tokenLeeway + time.Second), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := MustTokenIssuer(t, testTokenOptions(tt.at)).Parse(tok)
			if got, want := err == nil, tt.valid; got != want {
				t.Fatalf("Parse at %v: err = %v, want valid = %v", tt.at, err, want)
			}
		})
	}
}

func TestTokenTTLOption(t *testing.T) {
	t.Parallel()
	opts := testTokenOptions(testNow)
	opts.TTL = time.Minute
	_, exp, err := MustTokenIssuer(t, opts).Issue("user-1", "s")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if got, want := exp, testNow.Add(time.Minute).Truncate(time.Second); !got.Equal(want) {
		t.Fatalf("expiresAt = %v, want %v", got, want)
	}
}

func TestTokenSecretRotation(t *testing.T) {
	t.Parallel()
	oldOpts := testTokenOptions(testNow)
	oldOpts.Secrets = map[string][]byte{"k0": testSecret0}
	oldOpts.CurrentKID = "k0"
	oldTok := MustIssue(t, MustTokenIssuer(t, oldOpts), "user-1", "s")

	// After rotation k1 signs, and tokens made under k0 still verify until k0 is dropped.
	rotated := MustTokenIssuer(t, testTokenOptions(testNow))
	if _, err := rotated.Parse(oldTok); err != nil {
		t.Fatalf("Parse(token signed by previous kid): %v", err)
	}
	newTok := MustIssue(t, rotated, "user-1", "s")
	if _, err := MustTokenIssuer(t, oldOpts).Parse(newTok); err == nil {
		t.Fatalf("issuer without k1 accepted a k1 token")
	}

	dropped := testTokenOptions(testNow)
	dropped.Secrets = map[string][]byte{"k1": testSecret}
	if _, err := MustTokenIssuer(t, dropped).Parse(oldTok); err == nil {
		t.Fatalf("token signed by a dropped kid still verifies")
	}
}

func TestTokenParseRejects(t *testing.T) {
	t.Parallel()
	ti := MustTokenIssuer(t, testTokenOptions(testNow))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("rsa.GenerateKey: %v", err)
	}
	valid := MustIssue(t, ti, "user-1", "session-1")
	parts := strings.Split(valid, ".")

	editedPayload := func() string {
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c map[string]any
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		c["sub"] = "user-2"
		b, _ = json.Marshal(c)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	}
	nonCanonicalSig := func() string {
		// 32 bytes need 43 base64 characters; the last carries 2 unused bits. Setting one
		// decodes to the same signature under lenient decoding.
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		sig := parts[2]
		i := strings.IndexByte(alphabet, sig[len(sig)-1])
		return parts[0] + "." + parts[1] + "." + sig[:len(sig)-1] + string(alphabet[i^1])
	}
	oversize := MustSign(t, jwt.SigningMethodHS256, testSecret, "k1",
		with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", MaxTokenBytes) }))

	// Issued an hour ago by the real issuer, so only its age is wrong.
	expired := MustIssue(t, MustTokenIssuer(t, testTokenOptions(testNow.Add(-time.Hour))), "user-1", "session-1")
	hs256Header := map[string]any{"alg": "HS256", "typ": "JWT", "kid": "k1"}
	claims := map[string]any(validClaims())

	tests := []struct {
		name  string
		token string
	}{
		// alg "none": an unsigned token must never be accepted.
		{"alg none", MustSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", validClaims())},
		// Case games on "none" that some libraries fell for.
		{"alg NONE, no signature", handMade(t, map[string]any{"alg": "NONE", "kid": "k1"}, claims, func(string) []byte { return nil })},
		// Algorithm substitution: only HS256 is allowed, even with the right secret.
		{"HS384 with the real secret", MustSign(t, jwt.SigningMethodHS384, testSecret, "k1", validClaims())},
		{"HS512 with the real secret", MustSign(t, jwt.SigningMethodHS512, testSecret, "k1", validClaims())},
		// An asymmetric token from an attacker's own key pair.
		{"RS256 signed with an RSA key", MustSign(t, jwt.SigningMethodRS256, rsaKey, "k1", validClaims())},
		// Key confusion: header says RS256, signature is HMAC with the shared secret.
		{"RS256 header, HMAC signature", handMade(t, map[string]any{"alg": "RS256", "kid": "k1"}, claims, hmacSHA256(testSecret))},
		// Forgery with a secret of the attacker's choosing.
		{"wrong secret", MustSign(t, jwt.SigningMethodHS256, otherSecret, "k1", validClaims())},
		// A prefix of the secret (a truncated key) must not verify.
		{"HS256 with the secret cut to 16 bytes", MustSign(t, jwt.SigningMethodHS256, testSecret[:16], "k1", validClaims())},
		// A longer key that starts with the secret must not verify.
		{"HS256 with the secret plus one byte", MustSign(t, jwt.SigningMethodHS256, append(bytes.Clone(testSecret), 'x'), "k1", validClaims())},
		// A kid the server never had: no fallback to the current secret.
		{"unknown kid", MustSign(t, jwt.SigningMethodHS256, testSecret, "k9", validClaims())},
		// kid selects the key: k1's signature under kid k0 must fail.
		{"kid names another known secret", MustSign(t, jwt.SigningMethodHS256, testSecret, "k0", validClaims())},
		// No kid: no fallback to the current secret.
		{"no kid", MustSign(t, jwt.SigningMethodHS256, testSecret, nil, validClaims())},
		{"kid not a string", MustSign(t, jwt.SigningMethodHS256, testSecret, 1, validClaims())},
		{"empty kid", MustSign(t, jwt.SigningMethodHS256, testSecret, "", validClaims())},
		// Replay of an old token.
		{"expired", expired},
		// A token that never expires.
		{"missing exp", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { delete(c, "exp") }))},
		// Pre-dated tokens (made with a stolen secret and a wrong clock) are refused.
		{"iat in the future", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) {
			c["iat"] = testNow.Add(time.Hour).Unix()
			c["exp"] = testNow.Add(2 * time.Hour).Unix()
		}))},
		{"missing iat", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { delete(c, "iat") }))},
		// A token minted for years (a leaked secret, or a forged lifetime) is refused.
		{"lifetime longer than the issuer grants", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) {
			c["exp"] = testNow.Add(365 * 24 * time.Hour).Unix()
		}))},
		{"nbf in the future", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { c["nbf"] = testNow.Add(time.Minute).Unix() }))},
		// A token from another deployment that shares the secret.
		{"wrong iss", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" }))},
		{"missing iss", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { delete(c, "iss") }))},
		// A token meant for another service.
		{"wrong aud", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { c["aud"] = []string{"other-api"} }))},
		{"missing aud", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { delete(c, "aud") }))},
		// Token-type confusion: a refresh token presented as an access token.
		{"typ refresh", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { c["typ"] = "refresh" }))},
		{"missing typ", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { delete(c, "typ") }))},
		{"missing sub", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { delete(c, "sub") }))},
		{"missing jti", MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", with(func(c jwt.MapClaims) { delete(c, "jti") }))},
		// Parser exhaustion: a huge token is refused before any decoding, even if well signed.
		{"oversize but validly signed", oversize},
		// Privilege escalation by editing the payload and keeping the signature.
		{"payload edited", editedPayload()},
		{"signature removed", parts[0] + "." + parts[1] + "."},
		{"header and payload only", parts[0] + "." + parts[1]},
		// Malleability: a second spelling of a valid token would dodge a revocation list of tokens.
		{"non-canonical signature encoding", nonCanonicalSig()},
		{"padded base64 signature", valid + "="},
		{"JWE-shaped five segments", valid + ".a.b"},
		{"empty", ""},
		{"garbage", "not a token"},
		{"Bearer prefix left on", "Bearer " + valid},
		{"hand-made HS256 with wrong key", handMade(t, hs256Header, claims, hmacSHA256(otherSecret))},
	}
	if len(oversize) <= MaxTokenBytes {
		t.Fatalf("oversize fixture is only %d bytes", len(oversize))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := ti.Parse(tt.token)
			if err == nil {
				t.Fatalf("Parse() = %+v, nil; want EUNAUTHORIZED", c)
			}
			MustBeInvalidTokenError(t, err, tt.token)
		})
	}

	// The fixture-making claims must themselves be valid, or every row above proves nothing.
	if _, err := ti.Parse(MustSign(t, jwt.SigningMethodHS256, testSecret, "k1", validClaims())); err != nil {
		t.Fatalf("Parse(validClaims signed with k1): %v", err)
	}
	if _, err := ti.Parse(handMade(t, hs256Header, claims, hmacSHA256(testSecret))); err != nil {
		t.Fatalf("Parse(hand-made valid token): %v", err)
	}
}

// MustBeInvalidTokenError fails unless err is the one fixed EUNAUTHORIZED error and does not
// quote the token.
func MustBeInvalidTokenError(tb testing.TB, err error, token string) {
	tb.Helper()
	e, ok := err.(*phr.Error)
	if !ok {
		tb.Fatalf("error is %T, want *phr.Error", err)
	}
	if got, want := e.Code, phr.EUNAUTHORIZED; got != want {
		tb.Fatalf("code = %q, want %q", got, want)
	}
	if got, want := e.Message, "invalid or expired token"; got != want {
		tb.Fatalf("message = %q, want %q", got, want)
	}
	if got, want := e.Field, ""; got != want {
		tb.Fatalf("field = %q, want %q", got, want)
	}
	if len(token) > 10 && strings.Contains(err.Error(), token[:10]) {
		tb.Fatalf("error %q quotes the token", err)
	}
}

func TestNewTokenIssuerRefuses(t *testing.T) {
	t.Parallel()
	edit := func(f func(o *TokenOptions)) TokenOptions {
		o := testTokenOptions(testNow)
		o.Secrets = maps.Clone(o.Secrets)
		f(&o)
		return o
	}
	tests := []struct {
		name string
		opts TokenOptions
	}{
		// A 31-byte secret is below the plan's 256 bits and easier to brute-force offline.
		{"secret of 31 bytes", edit(func(o *TokenOptions) { o.Secrets["k1"] = bytes.Repeat([]byte{'s'}, 31) })},
		// A weak old secret still verifies, so it counts as much as the current one.
		{"short non-current secret", edit(func(o *TokenOptions) { o.Secrets["k0"] = []byte("short") })},
		{"no secrets", edit(func(o *TokenOptions) { o.Secrets = nil })},
		{"current kid names no secret", edit(func(o *TokenOptions) { o.CurrentKID = "k9" })},
		{"empty current kid", edit(func(o *TokenOptions) { o.CurrentKID = "" })},
		{"empty kid in the map", edit(func(o *TokenOptions) { o.Secrets[""] = testSecret })},
		// Without iss/aud checks a token from any system sharing the secret would pass.
		{"empty issuer", edit(func(o *TokenOptions) { o.Issuer = "" })},
		{"empty audience", edit(func(o *TokenOptions) { o.Audience = "" })},
		{"negative TTL", edit(func(o *TokenOptions) { o.TTL = -time.Minute })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ti, err := NewTokenIssuer(tt.opts)
			if err == nil {
				t.Fatalf("NewTokenIssuer() = %v, nil; want an error", ti)
			}
			for _, s := range tt.opts.Secrets {
				if len(s) >= 8 && leaks(err.Error(), s) {
					t.Fatalf("error %q contains a secret", err)
				}
			}
		})
	}
	ok := testTokenOptions(testNow)
	ok.Secrets = map[string][]byte{"k1": bytes.Repeat([]byte{'s'}, 32)}
	if _, err := NewTokenIssuer(ok); err != nil {
		t.Fatalf("NewTokenIssuer(32-byte secret): %v", err)
	}
}

func TestTokenIssueRefusesEmptyUser(t *testing.T) {
	t.Parallel()
	// A token without a subject would authenticate nobody in particular.
	if _, _, err := MustTokenIssuer(t, testTokenOptions(testNow)).Issue("", "s"); err == nil {
		t.Fatalf("Issue(\"\") error = nil, want an error")
	}
}

func TestTokenIssuerCopiesSecrets(t *testing.T) {
	t.Parallel()
	opts := testTokenOptions(testNow)
	secret := bytes.Clone(testSecret)
	opts.Secrets = map[string][]byte{"k1": secret}
	ti := MustTokenIssuer(t, opts)
	tok := MustIssue(t, ti, "user-1", "s")
	// The caller may zero its secrets after start-up, or reuse the map.
	clear(secret)
	opts.Secrets["k2"] = otherSecret
	if _, err := ti.Parse(tok); err != nil {
		t.Fatalf("Parse after caller cleared its secret: %v", err)
	}
	if _, err := ti.Parse(MustSign(t, jwt.SigningMethodHS256, otherSecret, "k2", validClaims())); err == nil {
		t.Fatalf("a kid added to the caller's map later was accepted")
	}
}

func TestTokenIssuerRedactsSecrets(t *testing.T) {
	t.Parallel()
	opts := testTokenOptions(testNow)
	ti := MustTokenIssuer(t, opts)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "tokens", ti, "opts", opts)
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v %s", ti, ti, ti, ti),
		fmt.Sprintf("%v %+v %#v %s", opts, opts, opts, opts),
		logged.String(),
	} {
		if leaks(s, testSecret) || leaks(s, testSecret0) {
			t.Fatalf("secret leaked in %q", s)
		}
	}
}

// FuzzTokenParse checks that no input other than the genuine token parses, and that every
// failure is the one fixed error.
func FuzzTokenParse(f *testing.F) {
	ti := MustTokenIssuer(f, testTokenOptions(testNow))
	// Hand-made rather than issued: fuzz workers are separate processes, and an issued
	// token's random jti would differ between them.
	valid := handMade(f, map[string]any{"alg": "HS256", "typ": "JWT", "kid": "k1"}, validClaims(), hmacSHA256(testSecret))
	f.Add(valid)
	f.Add(MustSign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", validClaims()))
	f.Add(MustSign(f, jwt.SigningMethodHS512, testSecret, "k1", validClaims()))
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := ti.Parse(token)
		if err == nil {
			if token != valid {
				t.Fatalf("Parse accepted an input other than the issued token: %+v", c)
			}
			return
		}
		MustBeInvalidTokenError(t, err, token)
	})
}

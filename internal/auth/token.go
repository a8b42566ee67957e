package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Access token limits (plan §4.3).
const (
	// DefaultTokenTTL is how long an access token lives when TokenOptions.TTL is zero.
	DefaultTokenTTL = 15 * time.Minute
	// MinSecretLength is the shortest HS256 secret NewTokenIssuer accepts: 256 bits.
	MinSecretLength = 32
	// MaxTokenBytes is the longest token Parse looks at; longer ones are refused unread.
	MaxTokenBytes = 4096
	// tokenLeeway absorbs clock skew between the instances that issue and check tokens.
	tokenLeeway = 5 * time.Second
	accessType  = "access"
)

// TokenOptions configures NewTokenIssuer.
type TokenOptions struct {
	// Secrets maps key ids to HS256 secrets of at least MinSecretLength bytes. Every secret
	// verifies; only CurrentKID's signs, so a new secret can be added, made current, and the
	// old one dropped once its tokens have expired.
	Secrets    map[string][]byte
	CurrentKID string
	Issuer     string
	Audience   string
	// TTL is the access token lifetime; 0 means DefaultTokenTTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// String keeps the secrets out of logs and error messages.
func (o TokenOptions) String() string {
	return fmt.Sprintf("auth.TokenOptions{Secrets:[REDACTED] CurrentKID:%q Issuer:%q Audience:%q TTL:%s}",
		o.CurrentKID, o.Issuer, o.Audience, o.TTL)
}

// GoString keeps the secrets out of %#v.
func (o TokenOptions) GoString() string { return o.String() }

// LogValue keeps the secrets out of slog output.
func (o TokenOptions) LogValue() slog.Value {
	return slog.GroupValue(slog.String("current_kid", o.CurrentKID), slog.String("issuer", o.Issuer),
		slog.String("audience", o.Audience), slog.Duration("ttl", o.TTL))
}

// AccessClaims is what a valid access token says.
type AccessClaims struct {
	UserID    string
	SessionID string // may be empty
	ID        string // the token's jti, unique per token
	ExpiresAt time.Time
}

// TokenIssuer issues and checks access tokens: JWTs signed with HS256, with a kid header
// naming the secret. It is safe for concurrent use.
type TokenIssuer struct {
	secrets    map[string][]byte
	currentKID string
	issuer     string
	audience   string
	ttl        time.Duration
	now        func() time.Time
	parser     *jwt.Parser
}

// NewTokenIssuer returns a TokenIssuer, or an error when a secret is shorter than
// MinSecretLength, a key id is empty, CurrentKID names no secret, Issuer or Audience is empty,
// or TTL is negative. The secrets are copied.
func NewTokenIssuer(opts TokenOptions) (*TokenIssuer, error) {
	if len(opts.Secrets) == 0 {
		return nil, errors.New("auth: token secrets are empty")
	}
	secrets := make(map[string][]byte, len(opts.Secrets))
	for kid, secret := range opts.Secrets {
		if kid == "" {
			return nil, errors.New("auth: token secret has an empty key id")
		}
		if len(secret) < MinSecretLength {
			return nil, fmt.Errorf("auth: token secret %q must be at least %d bytes", kid, MinSecretLength)
		}
		secrets[kid] = append([]byte(nil), secret...)
	}
	if _, ok := secrets[opts.CurrentKID]; !ok {
		return nil, fmt.Errorf("auth: current token key id %q names no secret", opts.CurrentKID)
	}
	if opts.Issuer == "" || opts.Audience == "" {
		return nil, errors.New("auth: token issuer and audience must be set")
	}
	ttl := opts.TTL
	if ttl < 0 {
		return nil, errors.New("auth: token TTL must not be negative")
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &TokenIssuer{
		secrets:    secrets,
		currentKID: opts.CurrentKID,
		issuer:     opts.Issuer,
		audience:   opts.Audience,
		ttl:        ttl,
		now:        now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(opts.Issuer),
			jwt.WithAudience(opts.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(tokenLeeway),
			jwt.WithTimeFunc(now),
			// Refuses non-canonical base64, so one token has exactly one spelling.
			jwt.WithStrictDecoding(),
		),
	}, nil
}

// String keeps the secrets out of logs and error messages.
func (t *TokenIssuer) String() string {
	return fmt.Sprintf("auth.TokenIssuer{currentKID:%q issuer:%q audience:%q ttl:%s}",
		t.currentKID, t.issuer, t.audience, t.ttl)
}

// GoString keeps the secrets out of %#v.
func (t *TokenIssuer) GoString() string { return t.String() }

// LogValue keeps the secrets out of slog output.
func (t *TokenIssuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("current_kid", t.currentKID), slog.String("issuer", t.issuer),
		slog.String("audience", t.audience), slog.Duration("ttl", t.ttl))
}

// accessTokenClaims is the JWT payload. Sid and typ are always present; typ keeps a token of
// another kind signed with the same secret from passing as an access token.
type accessTokenClaims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid"`
	Type      string `json:"typ"`
}

// Issue returns a signed access token for the user and session, and the moment it expires
// (whole seconds, as written in the token). userID must not be empty.
func (t *TokenIssuer) Issue(userID, sessionID string) (token string, expiresAt time.Time, err error) {
	if userID == "" {
		return "", time.Time{}, errors.New("auth: access token needs a user id")
	}
	now := t.now()
	exp := jwt.NewNumericDate(now.Add(t.ttl))
	claims := accessTokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   userID,
			Audience:  jwt.ClaimStrings{t.audience},
			ExpiresAt: exp,
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        rand.Text(),
		},
		SessionID: sessionID,
		Type:      accessType,
	}
	j := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	j.Header["kid"] = t.currentKID
	token, err = j.SignedString(t.secrets[t.currentKID])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign access token: %w", err)
	}
	return token, exp.Time, nil
}

// Parse checks an access token and returns its claims. Any failure — malformed, oversize,
// wrong algorithm, unknown or missing kid, bad signature, expired, issued in the future, wrong
// issuer, audience or type, missing claims — returns a *phr.Error with code EUNAUTHORIZED and
// the one message "invalid or expired token", so a client learns nothing about which check
// failed.
func (t *TokenIssuer) Parse(token string) (*AccessClaims, error) {
	if len(token) > MaxTokenBytes {
		return nil, errInvalidToken()
	}
	var claims accessTokenClaims
	parsed, err := t.parser.ParseWithClaims(token, &claims, t.key)
	if err != nil || !parsed.Valid {
		return nil, errInvalidToken()
	}
	// The parser checks iat only when present; every token Issue makes has one.
	if claims.Type != accessType || claims.Subject == "" || claims.ID == "" || claims.IssuedAt == nil {
		return nil, errInvalidToken()
	}
	// A token can live no longer than this issuer grants, whatever its exp says: a leaked
	// signing secret must not mint tokens for years, and a TTL cut takes effect at once.
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > t.ttl+tokenLeeway {
		return nil, errInvalidToken()
	}
	return &AccessClaims{
		UserID:    claims.Subject,
		SessionID: claims.SessionID,
		ID:        claims.ID,
		ExpiresAt: claims.ExpiresAt.Time,
	}, nil
}

// key is the jwt.Keyfunc: the secret named by the kid header, and only for HS256.
func (t *TokenIssuer) key(j *jwt.Token) (any, error) {
	// WithValidMethods already refuses other algorithms; checking again here keeps a future
	// parser option change from turning into algorithm confusion.
	if j.Method != jwt.SigningMethodHS256 {
		return nil, errors.New("unexpected signing method")
	}
	kid, ok := j.Header["kid"].(string)
	if !ok {
		return nil, errors.New("missing kid")
	}
	secret, ok := t.secrets[kid]
	if !ok {
		return nil, errors.New("unknown kid")
	}
	return secret, nil
}

const invalidTokenMessage = "invalid or expired token"

// errInvalidToken is a fresh value each time so that no caller can alter a shared one.
func errInvalidToken() error {
	return phr.Errorf(phr.EUNAUTHORIZED, invalidTokenMessage)
}

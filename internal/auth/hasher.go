package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// DefaultCost is the bcrypt cost the plan requires (§4.1, about 250 ms per hash).
const DefaultCost = 12

// MinPepperLength is the shortest pepper NewHasher accepts: 256 bits.
const MinPepperLength = 32

// Stored hashes look like "$vnp<version>$<bcrypt hash>". The version names the pepper (and the
// pre-hash construction), so a later pepper can be introduced without touching old rows.
const (
	storedPrefix   = "$vnp"
	currentVersion = 1
	bcryptLen      = 60 // "$2a$" + 2-digit cost + "$" + 22 salt + 31 hash characters
)

// HasherOptions configures NewHasher.
type HasherOptions struct {
	// Pepper is the server secret mixed into every password; at least MinPepperLength bytes.
	// It is pepper version 1.
	Pepper []byte
	// Cost is the bcrypt cost; 0 means DefaultCost. Tests may use bcrypt.MinCost.
	Cost int
	// Workers bounds how many bcrypt computations run at once; 0 means runtime.NumCPU().
	Workers int
}

// String keeps the pepper out of logs and error messages.
func (o HasherOptions) String() string {
	return fmt.Sprintf("auth.HasherOptions{Pepper:[REDACTED] Cost:%d Workers:%d}", o.Cost, o.Workers)
}

// GoString keeps the pepper out of %#v.
func (o HasherOptions) GoString() string { return o.String() }

// LogValue keeps the pepper out of slog output.
func (o HasherOptions) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("cost", o.Cost), slog.Int("workers", o.Workers))
}

// Hasher hashes and checks passwords. It is safe for concurrent use.
//
// The password is first reduced to base64(HMAC-SHA256(pepper, password)) — 44 bytes — and that
// is what bcrypt sees, so no password is ever truncated at bcrypt's 72-byte limit, and a stolen
// table of hashes cannot be attacked without the pepper.
type Hasher struct {
	peppers map[int][]byte
	cost    int
	sem     chan struct{}
	dummy   string
}

// NewHasher returns a Hasher, or an error when the pepper is shorter than MinPepperLength, the
// cost is outside bcrypt's range or Workers is negative. It computes one hash (for
// CompareDummy), so it takes as long as one Hash.
func NewHasher(opts HasherOptions) (*Hasher, error) {
	if len(opts.Pepper) < MinPepperLength {
		return nil, fmt.Errorf("auth: password pepper must be at least %d bytes", MinPepperLength)
	}
	cost := opts.Cost
	if cost == 0 {
		cost = DefaultCost
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("auth: bcrypt cost %d outside [%d, %d]", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	workers := opts.Workers
	if workers < 0 {
		return nil, errors.New("auth: hasher workers must not be negative")
	}
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	h := &Hasher{
		peppers: map[int][]byte{currentVersion: append([]byte(nil), opts.Pepper...)},
		cost:    cost,
		sem:     make(chan struct{}, workers),
	}
	// The dummy's password is irrelevant: CompareDummy only needs a hash of the same cost to
	// spend the same time on.
	dummy, err := h.hash(currentVersion, "vitalnexa dummy password")
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

// String keeps the pepper out of logs and error messages.
func (h *Hasher) String() string {
	return fmt.Sprintf("auth.Hasher{cost:%d workers:%d}", h.cost, cap(h.sem))
}

// GoString keeps the pepper out of %#v.
func (h *Hasher) GoString() string { return h.String() }

// LogValue keeps the pepper out of slog output.
func (h *Hasher) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("cost", h.cost), slog.Int("workers", cap(h.sem)))
}

// Hash returns the stored form of password: "$vnp1$" followed by a bcrypt hash. It waits for
// a worker slot and returns ctx.Err() if ctx ends first. Hash does not apply a PasswordPolicy;
// callers check the policy before hashing a new password.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return h.hash(currentVersion, password)
}

// Compare reports whether password matches stored, a value made by Hash. A stored value that
// is not in Hash's format (or names an unknown pepper version) is an error, never a match;
// the error does not quote the value. Like Hash, it waits for a worker slot and returns
// ctx.Err() if ctx ends first.
func (h *Hasher) Compare(ctx context.Context, stored, password string) (bool, error) {
	version, bhash, err := parseStored(stored)
	if err != nil {
		return false, err
	}
	pepper, ok := h.peppers[version]
	if !ok {
		return false, fmt.Errorf("auth: stored password hash names unknown pepper version %d", version)
	}
	release, err := h.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	err = bcrypt.CompareHashAndPassword(bhash, prehash(pepper, password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	default:
		return false, errMalformedStored
	}
}

// CompareDummy spends the same work as a Compare against a hash of the Hasher's cost, and
// discards the result. Login calls it when no account has the given email, so that the answer
// for an unknown email takes as long as the answer for a wrong password. It uses a worker slot
// like Compare and returns early only if ctx ends while waiting for one.
func (h *Hasher) CompareDummy(ctx context.Context, password string) {
	_, _ = h.Compare(ctx, h.dummy, password)
}

// NeedsRehash reports whether stored was made with another pepper version or another cost than
// this Hasher uses, so that a caller who has just verified the password may store a fresh
// Hash. A malformed stored value needs rehashing too.
func (h *Hasher) NeedsRehash(stored string) bool {
	version, bhash, err := parseStored(stored)
	if err != nil || version != currentVersion {
		return true
	}
	cost, err := bcrypt.Cost(bhash)
	return err != nil || cost != h.cost
}

// acquire takes a worker slot, or returns ctx.Err() if ctx ends first. The release function
// must be called exactly once.
func (h *Hasher) acquire(ctx context.Context) (release func(), err error) {
	// Checked first because select picks at random when both cases are ready: a caller whose
	// request is already gone must not get to spend a bcrypt.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case h.sem <- struct{}{}:
		return func() { <-h.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *Hasher) hash(version int, password string) (string, error) {
	b, err := bcrypt.GenerateFromPassword(prehash(h.peppers[version], password), h.cost)
	if err != nil {
		return "", fmt.Errorf("auth: bcrypt: %w", err)
	}
	return storedPrefix + strconv.Itoa(version) + "$" + string(b), nil
}

// prehash is base64(HMAC-SHA256(pepper, password)): 44 bytes, under bcrypt's 72-byte limit and
// free of NUL bytes, whatever the password's length.
func prehash(pepper []byte, password string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(password))
	sum := m.Sum(nil)
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sum)))
	base64.StdEncoding.Encode(out, sum)
	return out
}

var errMalformedStored = errors.New("auth: stored password hash is malformed")

// parseStored splits "$vnp<version>$<bcrypt>" and checks the bcrypt part strictly: bcrypt
// itself accepts trailing bytes (and then reports a mismatch), which would hide corruption.
func parseStored(stored string) (version int, bhash []byte, err error) {
	rest, ok := strings.CutPrefix(stored, storedPrefix)
	if !ok {
		return 0, nil, errMalformedStored
	}
	digits, b, ok := strings.Cut(rest, "$")
	if !ok || digits == "" || len(digits) > 4 || digits[0] == '0' {
		return 0, nil, errMalformedStored
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, nil, errMalformedStored
		}
	}
	version, _ = strconv.Atoi(digits)
	if !validBcrypt(b) {
		return 0, nil, errMalformedStored
	}
	return version, []byte(b), nil
}

// validBcrypt reports whether s is "$2a$", "$2b$" or "$2y$", a two-digit cost, "$" and 53
// characters of bcrypt's base64 alphabet.
func validBcrypt(s string) bool {
	if len(s) != bcryptLen {
		return false
	}
	switch s[:4] {
	case "$2a$", "$2b$", "$2y$":
	default:
		return false
	}
	if s[4] < '0' || s[4] > '9' || s[5] < '0' || s[5] > '9' || s[6] != '$' {
		return false
	}
	for i := 7; i < len(s); i++ {
		c := s[i]
		if !(c == '.' || c == '/' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	cost, err := bcrypt.Cost([]byte(s))
	return err == nil && cost >= bcrypt.MinCost && cost <= bcrypt.MaxCost
}

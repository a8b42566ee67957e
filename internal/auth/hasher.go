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
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
	"golang.org/x/crypto/bcrypt"
)

// DefaultCost is the bcrypt cost the plan requires (§4.1, about 250 ms per hash).
const DefaultCost = 12

// MinPepperLength is the shortest pepper NewHasher accepts: 256 bits.
const MinPepperLength = 32

// DefaultMaxWait is how long a caller waits for a bcrypt worker when HasherOptions.MaxWait is
// zero: about eight hashes at DefaultCost, long enough to ride out a burst of sign-ins, short
// enough that a client hears "busy" before it gives up on its own.
const DefaultMaxWait = 2 * time.Second

// DefaultQueuePerWorker sets the default HasherOptions.MaxQueue: this many waiting callers per
// worker.
const DefaultQueuePerWorker = 64

// Stored hashes look like "$vnp<version>$<bcrypt hash>". The version names the pepper (and the
// pre-hash construction), so a later pepper can be introduced without touching old rows.
const (
	storedPrefix = "$vnp"
	maxVersion   = 9999 // parseStored reads at most four digits
	bcryptLen    = 60   // "$2a$" + 2-digit cost + "$" + 22 salt + 31 hash characters
)

// busyMessage is the safe message of the EUNAVAILABLE error a saturated Hasher returns.
const busyMessage = "The service is busy. Try again shortly."

// HasherOptions configures NewHasher.
type HasherOptions struct {
	// Pepper is the server secret mixed into every password; at least MinPepperLength bytes.
	// It is pepper version 1, kept so that a single-pepper configuration stays one line; it
	// may be combined with Peppers only when Peppers has no version 1.
	Pepper []byte
	// Peppers maps pepper versions (1 to 9999) to server secrets of at least MinPepperLength
	// bytes each. Every version verifies the hashes made under it; only CurrentPepper hashes.
	// Rotation: add the new version to every instance, then make it current, then, once
	// NeedsRehash has upgraded (or expired) the old rows, drop the old version.
	Peppers map[int][]byte
	// CurrentPepper is the version Hash uses; 0 means version 1. It must name a pepper.
	CurrentPepper int
	// Cost is the bcrypt cost; 0 means DefaultCost. Tests may use bcrypt.MinCost.
	Cost int
	// Workers bounds how many bcrypt computations run at once; 0 means runtime.NumCPU()-1
	// (at least 1). bcrypt is pure CPU: were every core hashing, a flood of sign-ins would
	// starve every other endpoint, the health check and the audit writer; one core left
	// free keeps the rest of the service answering while sign-ins queue.
	Workers int
	// MaxWait bounds how long a caller waits for a worker; 0 means DefaultMaxWait. A caller
	// that gets none in time receives an EUNAVAILABLE error rather than waiting on.
	MaxWait time.Duration
	// MaxQueue bounds how many callers may wait for a worker at once; 0 means
	// DefaultQueuePerWorker times Workers. A caller beyond it fails at once with EUNAVAILABLE,
	// so a flood costs memory and goroutines in proportion to the bound, not to the flood.
	MaxQueue int
}

// String keeps the peppers out of logs and error messages.
func (o HasherOptions) String() string {
	return fmt.Sprintf("auth.HasherOptions{Pepper:[REDACTED] Peppers:[REDACTED] CurrentPepper:%d Cost:%d Workers:%d MaxWait:%s MaxQueue:%d}",
		o.CurrentPepper, o.Cost, o.Workers, o.MaxWait, o.MaxQueue)
}

// GoString keeps the peppers out of %#v.
func (o HasherOptions) GoString() string { return o.String() }

// LogValue keeps the peppers out of slog output.
func (o HasherOptions) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("current_pepper", o.CurrentPepper), slog.Int("cost", o.Cost),
		slog.Int("workers", o.Workers), slog.Duration("max_wait", o.MaxWait), slog.Int("max_queue", o.MaxQueue))
}

// Hasher hashes and checks passwords. It is safe for concurrent use.
//
// The password is first reduced to base64(HMAC-SHA256(pepper, password)) — 44 bytes — and that
// is what bcrypt sees, so no password is ever truncated at bcrypt's 72-byte limit, and a stolen
// table of hashes cannot be attacked without the pepper.
//
// At most Workers computations run at once, at most MaxQueue callers wait for one, and none
// waits longer than MaxWait: under overload callers get a prompt EUNAVAILABLE instead of a
// queue that grows with the flood.
type Hasher struct {
	peppers  map[int][]byte
	current  int
	cost     int
	sem      chan struct{}
	maxWait  time.Duration
	maxQueue int64
	waiting  atomic.Int64
	dummy    string
}

// NewHasher returns a Hasher, or an error when a pepper is shorter than MinPepperLength or has
// a version outside 1 to 9999, two versions share one pepper, CurrentPepper names no pepper,
// the cost is outside bcrypt's range, or Workers, MaxWait or MaxQueue is negative. It computes
// one hash (for CompareDummy), so it takes as long as one Hash.
func NewHasher(opts HasherOptions) (*Hasher, error) {
	peppers, err := hasherPeppers(opts)
	if err != nil {
		return nil, err
	}
	current := opts.CurrentPepper
	if current == 0 {
		current = 1
	}
	if _, ok := peppers[current]; !ok {
		return nil, fmt.Errorf("auth: current pepper version %d names no pepper", current)
	}
	cost := opts.Cost
	if cost == 0 {
		cost = DefaultCost
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("auth: bcrypt cost %d outside [%d, %d]", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if opts.Workers < 0 || opts.MaxWait < 0 || opts.MaxQueue < 0 {
		return nil, errors.New("auth: hasher workers, max wait and max queue must not be negative")
	}
	workers := opts.Workers
	if workers == 0 {
		workers = max(1, runtime.NumCPU()-1)
	}
	maxWait := opts.MaxWait
	if maxWait == 0 {
		maxWait = DefaultMaxWait
	}
	maxQueue := opts.MaxQueue
	if maxQueue == 0 {
		maxQueue = DefaultQueuePerWorker * workers
	}
	h := &Hasher{
		peppers:  peppers,
		current:  current,
		cost:     cost,
		sem:      make(chan struct{}, workers),
		maxWait:  maxWait,
		maxQueue: int64(maxQueue),
	}
	// The dummy's password is irrelevant: CompareDummy only needs a hash of the same cost to
	// spend the same time on.
	dummy, err := h.hash(current, "vitalnexa dummy password")
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

// hasherPeppers merges Pepper (as version 1) and Peppers into a checked private copy, so a
// caller that zeroes its secrets after start-up does not break sign-in.
func hasherPeppers(opts HasherOptions) (map[int][]byte, error) {
	all := make(map[int][]byte, len(opts.Peppers)+1)
	for version, pepper := range opts.Peppers {
		all[version] = pepper
	}
	if opts.Pepper != nil {
		if _, ok := all[1]; ok {
			return nil, errors.New("auth: pepper version 1 is set both as Pepper and in Peppers")
		}
		all[1] = opts.Pepper
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("auth: password pepper must be at least %d bytes", MinPepperLength)
	}
	versions := make([]int, 0, len(all))
	for version := range all {
		versions = append(versions, version)
	}
	slices.Sort(versions) // deterministic error messages
	peppers := make(map[int][]byte, len(all))
	for i, version := range versions {
		pepper := all[version]
		if version < 1 || version > maxVersion {
			return nil, fmt.Errorf("auth: pepper version %d outside [1, %d]", version, maxVersion)
		}
		if len(pepper) < MinPepperLength {
			return nil, fmt.Errorf("auth: password pepper must be at least %d bytes (version %d)", MinPepperLength, version)
		}
		// A "rotation" that reuses the old secret under a new number rotates nothing.
		for _, earlier := range versions[:i] {
			if hmac.Equal(all[earlier], pepper) {
				return nil, fmt.Errorf("auth: pepper versions %d and %d are equal", earlier, version)
			}
		}
		peppers[version] = append([]byte(nil), pepper...)
	}
	return peppers, nil
}

// String keeps the peppers out of logs and error messages.
func (h *Hasher) String() string {
	return fmt.Sprintf("auth.Hasher{pepper:%d cost:%d workers:%d max_wait:%s max_queue:%d}",
		h.current, h.cost, cap(h.sem), h.maxWait, h.maxQueue)
}

// GoString keeps the peppers out of %#v.
func (h *Hasher) GoString() string { return h.String() }

// LogValue keeps the peppers out of slog output.
func (h *Hasher) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("current_pepper", h.current), slog.Int("cost", h.cost),
		slog.Int("workers", cap(h.sem)), slog.Duration("max_wait", h.maxWait), slog.Int64("max_queue", h.maxQueue))
}

// Hash returns the stored form of password: "$vnp<current pepper version>$" followed by a
// bcrypt hash. It waits for a worker slot: it returns ctx.Err() if ctx ends first, and a
// *phr.Error with code EUNAVAILABLE when the queue is full or no slot frees within MaxWait.
// Hash does not apply a PasswordPolicy; callers check the policy before hashing a new
// password.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return h.hash(h.current, password)
}

// Compare reports whether password matches stored, a value made by Hash under any pepper
// version this Hasher holds. A stored value that is not in Hash's format (or names an unknown
// pepper version) is an error, never a match; the error does not quote the value. Like Hash,
// it waits for a worker slot and returns ctx.Err() or an EUNAVAILABLE *phr.Error when it
// gets none.
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
// like Compare and returns early, with Compare's error (ctx.Err() or EUNAVAILABLE), when it
// gets none; it returns nil once the work is spent. A caller should answer that error exactly
// as it answers Compare's, or "busy" would tell a known email from an unknown one.
func (h *Hasher) CompareDummy(ctx context.Context, password string) error {
	_, err := h.Compare(ctx, h.dummy, password)
	return err
}

// NeedsRehash reports whether stored was made with another pepper version or another cost than
// this Hasher uses, so that a caller who has just verified the password may store a fresh
// Hash. A malformed stored value needs rehashing too.
func (h *Hasher) NeedsRehash(stored string) bool {
	version, bhash, err := parseStored(stored)
	if err != nil || version != h.current {
		return true
	}
	cost, err := bcrypt.Cost(bhash)
	return err != nil || cost != h.cost
}

// acquire takes a worker slot. It returns ctx.Err() if ctx ends first, and an EUNAVAILABLE
// *phr.Error at once when MaxQueue callers are already waiting, or after MaxWait. The release
// function must be called exactly once.
func (h *Hasher) acquire(ctx context.Context) (release func(), err error) {
	// Checked first because select picks at random when both cases are ready: a caller whose
	// request is already gone must not get to spend a bcrypt.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	release = func() { <-h.sem }
	select {
	case h.sem <- struct{}{}:
		return release, nil
	default:
	}
	// Counting before checking may refuse a caller while another is just leaving the queue;
	// erring towards "busy" at the boundary is what a bound is for.
	if h.waiting.Add(1) > h.maxQueue {
		h.waiting.Add(-1)
		return nil, errBusy()
	}
	defer h.waiting.Add(-1)
	timer := time.NewTimer(h.maxWait)
	defer timer.Stop()
	select {
	case h.sem <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, errBusy()
	}
}

func errBusy() error { return phr.Errorf(phr.EUNAVAILABLE, busyMessage) }

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

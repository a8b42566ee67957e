package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
	"golang.org/x/crypto/bcrypt"
)

var (
	testPepper  = []byte("vitalnexa-test-pepper-0123456789abcdef") // 38 bytes
	testPepper2 = []byte("vitalnexa-test-pepper-two-9876543210fedcba")
)

// MustHasher returns a fast Hasher (bcrypt.MinCost) with the test pepper, unless opts names
// peppers of its own.
func MustHasher(tb testing.TB, opts HasherOptions) *Hasher {
	tb.Helper()
	if opts.Pepper == nil && opts.Peppers == nil {
		opts.Pepper = testPepper
	}
	if opts.Cost == 0 {
		opts.Cost = bcrypt.MinCost
	}
	h, err := NewHasher(opts)
	if err != nil {
		tb.Fatalf("NewHasher: %v", err)
	}
	return h
}

// MustHash hashes password or fails the test.
func MustHash(tb testing.TB, h *Hasher, password string) string {
	tb.Helper()
	stored, err := h.Hash(context.Background(), password)
	if err != nil {
		tb.Fatalf("Hash: %v", err)
	}
	return stored
}

func TestHasherCompare(t *testing.T) {
	t.Parallel()
	h := MustHasher(t, HasherOptions{})
	other := MustHasher(t, HasherOptions{Pepper: []byte("another-pepper-of-enough-length-0123456789")})

	long200 := strings.Repeat("a", 199) + "b"
	long200Edited := strings.Repeat("a", 199) + "c"
	cyr256 := strings.Repeat("Ж", 256) // 512 bytes

	tests := []struct {
		name     string
		hasher   *Hasher // hashes; h compares
		password string
		try      string
		want     bool
	}{
		{"same password matches", h, "Abcdef1!", "Abcdef1!", true},
		{"wrong password", h, "Abcdef1!", "Abcdef1?", false},
		{"empty try", h, "Abcdef1!", "", false},
		{"case differs", h, "Abcdef1!", "abcdef1!", false},
		{"200-byte password matches itself", h, long200, long200, true},
		// bcrypt alone ignores bytes after 72: a 200-byte password must not match its edit.
		{"200-byte password, last byte changed", h, long200, long200Edited, false},
		// Likewise a 72-byte prefix must not log in as the whole password.
		{"72-byte prefix of a 200-byte password", h, long200, long200[:72], false},
		{"512-byte Cyrillic password matches itself", h, cyr256, cyr256, true},
		{"512-byte Cyrillic password, last rune changed", h, cyr256, cyr256[:len(cyr256)-2] + "З", false},
		// A hash table stolen without the pepper is useless: another pepper never matches.
		{"hash made under another pepper", other, "Abcdef1!", "Abcdef1!", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stored := MustHash(t, tt.hasher, tt.password)
			got, err := h.Compare(context.Background(), stored, tt.try)
			if err != nil {
				t.Fatalf("Compare: %v", err)
			}
			if want := tt.want; got != want {
				t.Fatalf("Compare() = %v, want %v", got, want)
			}
		})
	}
}

func TestHasherStoredForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cost     int
		wantCost int
	}{
		{"min cost", bcrypt.MinCost, bcrypt.MinCost},
		{"default cost is 12", 0, DefaultCost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := NewHasher(HasherOptions{Pepper: testPepper, Cost: tt.cost})
			if err != nil {
				t.Fatalf("NewHasher: %v", err)
			}
			stored := MustHash(t, h, "Abcdef1!")
			rest, ok := strings.CutPrefix(stored, "$vnp1$")
			if !ok {
				t.Fatalf("stored form lacks the $vnp1$ version prefix")
			}
			cost, err := bcrypt.Cost([]byte(rest))
			if err != nil {
				t.Fatalf("bcrypt.Cost: %v", err)
			}
			if got, want := cost, tt.wantCost; got != want {
				t.Fatalf("cost = %d, want %d", got, want)
			}
			if got, want := len(rest), 60; got != want {
				t.Fatalf("bcrypt part is %d bytes, want %d", got, want)
			}
			// The pepper, not just bcrypt, must be in play: bcrypt of the bare password fails.
			if bcrypt.CompareHashAndPassword([]byte(rest), []byte("Abcdef1!")) == nil {
				t.Fatalf("stored hash is bcrypt of the bare password; the pre-hash is missing")
			}
			if stored2 := MustHash(t, h, "Abcdef1!"); stored2 == stored {
				t.Fatalf("two hashes of one password are equal; the salt is missing")
			}
			if got, want := h.NeedsRehash(stored), false; got != want {
				t.Fatalf("NeedsRehash(fresh hash) = %v, want %v", got, want)
			}
		})
	}
}

func TestHasherCompareMalformed(t *testing.T) {
	t.Parallel()
	h := MustHasher(t, HasherOptions{})
	good := MustHash(t, h, "Abcdef1!")
	bare := strings.TrimPrefix(good, "$vnp1$")

	tests := []struct {
		name   string
		stored string
	}{
		{"empty", ""},
		{"prefix only", "$vnp1$"},
		// A bare bcrypt hash (imported, or written by a bug) was never peppered: refuse it.
		{"bcrypt without version prefix", bare},
		// A version this build has no pepper for must not fall back to version 1.
		{"unknown pepper version", "$vnp2$" + bare},
		{"version zero", "$vnp0$" + bare},
		{"version with leading zero", "$vnp01$" + bare},
		{"version not a number", "$vnpx$" + bare},
		{"version missing", "$vnp$" + bare},
		{"other scheme", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"},
		{"truncated bcrypt", good[:len(good)-1]},
		// bcrypt itself ignores the extra bytes and reports a mismatch, hiding corruption.
		{"trailing bytes", good + "x"},
		{"invalid base64 character", good[:len(good)-1] + "!"},
		{"bcrypt cost out of range", "$vnp1$" + bare[:4] + "99" + bare[6:]},
		{"bcrypt cost below minimum", "$vnp1$" + bare[:4] + "03" + bare[6:]},
		{"unknown bcrypt variant", "$vnp1$$2x$" + bare[4:]},
		{"NUL inside", good[:20] + "\x00" + good[21:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ok, err := h.Compare(context.Background(), tt.stored, "Abcdef1!")
			if err == nil {
				t.Fatalf("Compare(malformed) error = nil, match = %v; want an error", ok)
			}
			if ok {
				t.Fatalf("Compare(malformed) = true; a malformed hash must never match")
			}
			if len(tt.stored) > 8 && strings.Contains(err.Error(), tt.stored[6:]) {
				t.Fatalf("error %q quotes the stored hash", err)
			}
			if got, want := h.NeedsRehash(tt.stored), true; got != want {
				t.Fatalf("NeedsRehash(malformed) = %v, want %v", got, want)
			}
		})
	}
}

func TestNewHasherRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts HasherOptions
	}{
		// A short pepper can be brute-forced from one known password and its hash.
		{"pepper of 31 bytes", HasherOptions{Pepper: bytes.Repeat([]byte{'p'}, 31)}},
		{"no pepper", HasherOptions{}},
		{"cost below bcrypt minimum", HasherOptions{Pepper: testPepper, Cost: bcrypt.MinCost - 1}},
		{"cost above bcrypt maximum", HasherOptions{Pepper: testPepper, Cost: bcrypt.MaxCost + 1}},
		{"negative workers", HasherOptions{Pepper: testPepper, Cost: bcrypt.MinCost, Workers: -1}},
		{"negative max wait", HasherOptions{Pepper: testPepper, Cost: bcrypt.MinCost, MaxWait: -time.Second}},
		{"negative max queue", HasherOptions{Pepper: testPepper, Cost: bcrypt.MinCost, MaxQueue: -1}},
		// Two spellings of version 1 would leave it unclear which secret old rows were made with.
		{"version 1 both as Pepper and in Peppers", HasherOptions{Pepper: testPepper,
			Peppers: map[int][]byte{1: testPepper2}, Cost: bcrypt.MinCost}},
		{"short pepper among versions", HasherOptions{Peppers: map[int][]byte{1: testPepper,
			2: bytes.Repeat([]byte{'p'}, 31)}, CurrentPepper: 1, Cost: bcrypt.MinCost}},
		{"pepper version 0", HasherOptions{Peppers: map[int][]byte{0: testPepper}, Cost: bcrypt.MinCost}},
		// parseStored reads at most four digits: hashes of version 10000 could never verify.
		{"pepper version 10000", HasherOptions{Peppers: map[int][]byte{1: testPepper,
			10000: testPepper2}, Cost: bcrypt.MinCost}},
		{"current pepper names no pepper", HasherOptions{Peppers: map[int][]byte{1: testPepper},
			CurrentPepper: 2, Cost: bcrypt.MinCost}},
		{"current pepper defaults to 1, which is absent", HasherOptions{
			Peppers: map[int][]byte{2: testPepper2}, Cost: bcrypt.MinCost}},
		// A rotation that reuses the old secret under a new number rotates nothing.
		{"two versions share one pepper", HasherOptions{Peppers: map[int][]byte{1: testPepper,
			2: bytes.Clone(testPepper)}, CurrentPepper: 2, Cost: bcrypt.MinCost}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := NewHasher(tt.opts)
			if err == nil {
				t.Fatalf("NewHasher() = %v, nil; want an error", h)
			}
			for _, pepper := range append([][]byte{tt.opts.Pepper}, slices.Collect(maps.Values(tt.opts.Peppers))...) {
				if len(pepper) > 0 && strings.Contains(err.Error(), string(pepper)) {
					t.Fatalf("error %q contains a pepper", err)
				}
			}
		})
	}
	if _, err := NewHasher(HasherOptions{Pepper: bytes.Repeat([]byte{'p'}, 32), Cost: bcrypt.MinCost}); err != nil {
		t.Fatalf("NewHasher(32-byte pepper): %v", err)
	}
}

func TestHasherCopiesPepper(t *testing.T) {
	t.Parallel()
	pepper := bytes.Clone(testPepper)
	h := MustHasher(t, HasherOptions{Pepper: pepper})
	stored := MustHash(t, h, "Abcdef1!")
	// A caller that zeroes its copy of the secret after start-up must not break logins.
	clear(pepper)
	ok, err := h.Compare(context.Background(), stored, "Abcdef1!")
	if err != nil || !ok {
		t.Fatalf("Compare after caller cleared its pepper = %v, %v; want true, nil", ok, err)
	}
}

// TestHasherPoolBound holds worker slots the way Hash does and shows that further work waits
// for a slot and gives up when its context ends.
func TestHasherPoolBound(t *testing.T) {
	t.Parallel()
	const wait = 50 * time.Millisecond
	tests := []struct {
		name    string
		workers int
		call    func(ctx context.Context, h *Hasher, stored string) error
	}{
		{"Hash waits", 1, func(ctx context.Context, h *Hasher, _ string) error {
			_, err := h.Hash(ctx, "Abcdef1!")
			return err
		}},
		{"Compare waits", 1, func(ctx context.Context, h *Hasher, stored string) error {
			_, err := h.Compare(ctx, stored, "Abcdef1!")
			return err
		}},
		// Otherwise a flood of logins for unknown emails would bypass the bound.
		{"CompareDummy waits", 1, func(ctx context.Context, h *Hasher, _ string) error {
			return h.CompareDummy(ctx, "Abcdef1!")
		}},
		{"third Hash waits with two workers", 2, func(ctx context.Context, h *Hasher, _ string) error {
			_, err := h.Hash(ctx, "Abcdef1!")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := MustHasher(t, HasherOptions{Workers: tt.workers})
			stored := MustHash(t, h, "Abcdef1!")

			releases := make([]func(), tt.workers)
			for i := range releases {
				release, err := h.acquire(context.Background())
				if err != nil {
					t.Fatalf("acquire: %v", err)
				}
				releases[i] = release
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if got, want := tt.call(ctx, h, stored), context.DeadlineExceeded; !errors.Is(got, want) {
				t.Fatalf("with all slots held: err = %v, want %v", got, want)
			}

			releases[0]()
			if err := tt.call(context.Background(), h, stored); err != nil {
				t.Fatalf("after a slot was released: %v", err)
			}
			for _, release := range releases[1:] {
				release()
			}
		})
	}
}

func TestHasherCanceledContext(t *testing.T) {
	t.Parallel()
	h := MustHasher(t, HasherOptions{})
	stored := MustHash(t, h, "Abcdef1!")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A request already gone must not spend bcrypt work, even with free slots.
	if _, err := h.Hash(ctx, "Abcdef1!"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hash(canceled) err = %v, want %v", err, context.Canceled)
	}
	if _, err := h.Compare(ctx, stored, "Abcdef1!"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Compare(canceled) err = %v, want %v", err, context.Canceled)
	}
}

func TestHasherDummyMatchesCost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cost int
	}{
		{"min cost", bcrypt.MinCost},
		{"cost 5", bcrypt.MinCost + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := MustHasher(t, HasherOptions{Cost: tt.cost})
			// Equal time for unknown emails needs a dummy of the same cost and format.
			version, bhash, err := parseStored(h.dummy)
			if err != nil {
				t.Fatalf("dummy hash is malformed: %v", err)
			}
			cost, err := bcrypt.Cost(bhash)
			if err != nil {
				t.Fatalf("bcrypt.Cost(dummy): %v", err)
			}
			if got, want := cost, tt.cost; got != want {
				t.Fatalf("dummy cost = %d, want %d", got, want)
			}
			if got, want := version, 1; got != want {
				t.Fatalf("dummy version = %d, want %d", got, want)
			}
		})
	}
}

func TestHasherNeedsRehash(t *testing.T) {
	t.Parallel()
	h4 := MustHasher(t, HasherOptions{Cost: bcrypt.MinCost})
	h5 := MustHasher(t, HasherOptions{Cost: bcrypt.MinCost + 1})
	stored4 := MustHash(t, h4, "Abcdef1!")
	tests := []struct {
		name   string
		hasher *Hasher
		stored string
		want   bool
	}{
		{"same cost", h4, stored4, false},
		{"cost raised since", h5, stored4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, want := tt.hasher.NeedsRehash(tt.stored), tt.want; got != want {
				t.Fatalf("NeedsRehash() = %v, want %v", got, want)
			}
		})
	}
}

func TestHasherRedactsPepper(t *testing.T) {
	t.Parallel()
	opts := HasherOptions{Pepper: testPepper, Peppers: map[int][]byte{2: testPepper2}, CurrentPepper: 2,
		Cost: bcrypt.MinCost}
	h := MustHasher(t, opts)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "hasher", h, "opts", opts)
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v %s", h, h, h, h),
		fmt.Sprintf("%v %+v %#v %s", opts, opts, opts, opts),
		logged.String(),
	} {
		for _, pepper := range [][]byte{testPepper, testPepper2} {
			if leaks(s, pepper) {
				t.Fatalf("pepper leaked in %q", s)
			}
		}
	}
}

// leaks reports whether s shows secret in any form fmt, slog or encoding/json would print it.
func leaks(s string, secret []byte) bool {
	for _, form := range []string{
		string(secret),
		fmt.Sprintf("%x", secret),
		strings.Trim(fmt.Sprint(secret[:8]), "[]"), // "118 105 ..." as fmt prints a []byte
		base64.StdEncoding.EncodeToString(secret)[:16],
	} {
		if strings.Contains(s, form) {
			return true
		}
	}
	return false
}

// MustHoldSlots takes every worker slot of h, the way a running Hash does, and returns a
// function that gives them back.
func MustHoldSlots(tb testing.TB, h *Hasher) (releaseAll func()) {
	tb.Helper()
	releases := make([]func(), cap(h.sem))
	for i := range releases {
		release, err := h.acquire(context.Background())
		if err != nil {
			tb.Fatalf("acquire: %v", err)
		}
		releases[i] = release
	}
	return func() {
		for _, release := range releases {
			release()
		}
	}
}

// MustWaiters blocks until n callers are queued for a slot of h.
func MustWaiters(tb testing.TB, h *Hasher, n int64) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.waiting.Load() != n {
		if time.Now().After(deadline) {
			tb.Fatalf("waiting = %d, want %d", h.waiting.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHasherBusy shows that a saturated Hasher answers EUNAVAILABLE instead of queueing
// without bound: at once when the queue is full, after MaxWait when no slot frees.
func TestHasherBusy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		call func(ctx context.Context, h *Hasher, stored string) error
	}{
		{"Hash", func(ctx context.Context, h *Hasher, _ string) error {
			_, err := h.Hash(ctx, "Abcdef1!")
			return err
		}},
		{"Compare", func(ctx context.Context, h *Hasher, stored string) error {
			_, err := h.Compare(ctx, stored, "Abcdef1!")
			return err
		}},
		// Unknown emails must hit the same bound, and report it the same way, or "busy" for
		// one and "wrong password" for the other would tell known emails from unknown.
		{"CompareDummy", func(ctx context.Context, h *Hasher, _ string) error {
			return h.CompareDummy(ctx, "Abcdef1!")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/full queue fails at once", func(t *testing.T) {
			t.Parallel()
			// MaxWait is far beyond the context's deadline: only a refusal without queueing
			// can answer EUNAVAILABLE here.
			h := MustHasher(t, HasherOptions{Workers: 1, MaxQueue: 2, MaxWait: time.Hour})
			stored := MustHash(t, h, "Abcdef1!")
			releaseAll := MustHoldSlots(t, h)
			defer releaseAll()
			queued, cancelQueued := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() { _ = tt.call(queued, h, stored) })
			}
			MustWaiters(t, h, 2)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tt.call(ctx, h, stored)
			MustBusy(t, err)
			if got, want := h.waiting.Load(), int64(2); got != want {
				t.Fatalf("after a refusal waiting = %d, want %d", got, want)
			}
			cancelQueued()
			wg.Wait()
		})
		t.Run(tt.name+"/no slot within MaxWait", func(t *testing.T) {
			t.Parallel()
			h := MustHasher(t, HasherOptions{Workers: 1, MaxWait: 20 * time.Millisecond})
			stored := MustHash(t, h, "Abcdef1!")
			releaseAll := MustHoldSlots(t, h)
			defer releaseAll()
			// No deadline on the request: before MaxWait this call would wait forever.
			MustBusy(t, tt.call(context.Background(), h, stored))
			if got, want := h.waiting.Load(), int64(0); got != want {
				t.Fatalf("after giving up waiting = %d, want %d", got, want)
			}
		})
	}
}

// MustBusy fails the test unless err is the EUNAVAILABLE *phr.Error of a saturated Hasher.
func MustBusy(tb testing.TB, err error) {
	tb.Helper()
	if got, want := phr.ErrorCode(err), phr.EUNAVAILABLE; got != want {
		tb.Fatalf("err = %v (code %q), want code %q", err, got, want)
	}
	if got, want := phr.ErrorMessage(err), "The service is busy. Try again shortly."; got != want {
		tb.Fatalf("message = %q, want %q", got, want)
	}
}

// TestHasherQueueWithinBounds shows that callers the queue has room for wait their turn and
// succeed.
func TestHasherQueueWithinBounds(t *testing.T) {
	t.Parallel()
	const queued = 4
	h := MustHasher(t, HasherOptions{Workers: 2, MaxQueue: queued, MaxWait: time.Minute})
	stored := MustHash(t, h, "Abcdef1!")
	releaseAll := MustHoldSlots(t, h)
	errs := make(chan error, queued)
	for i := range queued {
		go func() {
			if i%2 == 0 {
				_, err := h.Hash(context.Background(), "Abcdef1!")
				errs <- err
				return
			}
			ok, err := h.Compare(context.Background(), stored, "Abcdef1!")
			if err == nil && !ok {
				err = errors.New("Compare of the right password = false")
			}
			errs <- err
		}()
	}
	MustWaiters(t, h, queued)
	releaseAll()
	for range queued {
		if err := <-errs; err != nil {
			t.Fatalf("queued caller within bounds: %v", err)
		}
	}
	if got, want := h.waiting.Load(), int64(0); got != want {
		t.Fatalf("waiting = %d after the queue drained, want %d", got, want)
	}
}

func TestHasherDefaults(t *testing.T) {
	t.Parallel()
	h := MustHasher(t, HasherOptions{})
	workers := max(1, runtime.NumCPU()-1)
	if got, want := cap(h.sem), workers; got != want {
		t.Fatalf("workers = %d, want %d (one core left for the other endpoints)", got, want)
	}
	if got, want := h.maxQueue, int64(64*workers); got != want {
		t.Fatalf("max queue = %d, want %d", got, want)
	}
	if got, want := h.maxWait, 2*time.Second; got != want {
		t.Fatalf("max wait = %s, want %s", got, want)
	}
}

// TestHasherPepperRotation: hashes made under an older pepper keep verifying after a new one
// becomes current, and NeedsRehash asks for their upgrade.
func TestHasherPepperRotation(t *testing.T) {
	t.Parallel()
	v1 := MustHasher(t, HasherOptions{Pepper: testPepper})
	v2 := MustHasher(t, HasherOptions{Peppers: map[int][]byte{1: testPepper, 2: testPepper2}, CurrentPepper: 2})
	// The compatible spelling: Pepper is version 1, Peppers adds the rest.
	mixed := MustHasher(t, HasherOptions{Pepper: testPepper, Peppers: map[int][]byte{2: testPepper2}, CurrentPepper: 2})
	// Version 2 added everywhere but not yet current: the first step of a rolling rotation.
	staged := MustHasher(t, HasherOptions{Peppers: map[int][]byte{1: testPepper, 2: testPepper2}})
	only2 := MustHasher(t, HasherOptions{Peppers: map[int][]byte{2: testPepper2}, CurrentPepper: 2})
	stored1 := MustHash(t, v1, "Abcdef1!")
	stored2 := MustHash(t, v2, "Abcdef1!")
	if !strings.HasPrefix(stored2, "$vnp2$") {
		t.Fatalf("hash under current pepper 2 lacks the $vnp2$ prefix")
	}

	tests := []struct {
		name        string
		hasher      *Hasher
		stored      string
		try         string
		want        bool
		wantErr     bool
		needsRehash bool
	}{
		{"version 1 verifies after 2 became current", v2, stored1, "Abcdef1!", true, false, true},
		{"version 1 verifies with Pepper plus Peppers", mixed, stored1, "Abcdef1!", true, false, true},
		{"version 1 wrong password", v2, stored1, "Abcdef1?", false, false, true},
		{"current version 2 verifies", v2, stored2, "Abcdef1!", true, false, false},
		{"staged version 2 verifies before it is current", staged, stored2, "Abcdef1!", true, false, true},
		{"staged hasher still hashes version 1", staged, stored1, "Abcdef1!", true, false, false},
		// An instance that lacks version 2 must refuse, not fall back to pepper 1.
		{"version 2 on a hasher without it", v1, stored2, "Abcdef1!", false, true, true},
		// Once version 1 is dropped its rows are errors, never matches.
		{"version 1 after it was dropped", only2, stored1, "Abcdef1!", false, true, true},
		// Relabelling a hash with another version must not make it verify under that pepper.
		{"version 1 hash relabelled as 2", v2, "$vnp2$" + strings.TrimPrefix(stored1, "$vnp1$"), "Abcdef1!", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.hasher.Compare(context.Background(), tt.stored, tt.try)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Compare() error = %v, want error %v", err, tt.wantErr)
			}
			if want := tt.want; got != want {
				t.Fatalf("Compare() = %v, want %v", got, want)
			}
			if got, want := tt.hasher.NeedsRehash(tt.stored), tt.needsRehash; got != want {
				t.Fatalf("NeedsRehash() = %v, want %v", got, want)
			}
		})
	}

	// The upgrade a sign-in performs: the fresh hash is current and needs nothing more.
	upgraded := MustHash(t, v2, "Abcdef1!")
	if got, want := v2.NeedsRehash(upgraded), false; got != want {
		t.Fatalf("NeedsRehash(upgraded) = %v, want %v", got, want)
	}
}

func BenchmarkHashDefaultCost(b *testing.B) {
	h, err := NewHasher(HasherOptions{Pepper: testPepper})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := h.Hash(context.Background(), "Abcdef1!"); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzHasherCompare checks that no stored value panics Compare, and that a value Compare
// accepts without error is in the exact stored form.
func FuzzHasherCompare(f *testing.F) {
	h := MustHasher(f, HasherOptions{})
	f.Add(MustHash(f, h, "Abcdef1!"))
	f.Add("$vnp1$$2a$04$" + strings.Repeat("a", 53))
	f.Add("$vnp2$")
	f.Add("")
	f.Fuzz(func(t *testing.T, stored string) {
		ok, err := h.Compare(context.Background(), stored, "Abcdef1!")
		if err != nil {
			if ok {
				t.Fatalf("Compare returned a match together with an error")
			}
			return
		}
		if _, _, perr := parseStored(stored); perr != nil {
			t.Fatalf("Compare accepted a value parseStored refuses: %v", perr)
		}
		if got, want := len(stored), len("$vnp1$")+60; got != want {
			t.Fatalf("Compare accepted a stored value of %d bytes, want %d", got, want)
		}
	})
}

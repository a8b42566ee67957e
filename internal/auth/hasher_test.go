package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var testPepper = []byte("vitalnexa-test-pepper-0123456789abcdef") // 38 bytes

// MustHasher returns a fast Hasher (bcrypt.MinCost) with the test pepper.
func MustHasher(tb testing.TB, opts HasherOptions) *Hasher {
	tb.Helper()
	if opts.Pepper == nil {
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := NewHasher(tt.opts)
			if err == nil {
				t.Fatalf("NewHasher() = %v, nil; want an error", h)
			}
			if len(tt.opts.Pepper) > 0 && strings.Contains(err.Error(), string(tt.opts.Pepper)) {
				t.Fatalf("error %q contains the pepper", err)
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
			h.CompareDummy(ctx, "Abcdef1!")
			return ctx.Err()
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
			if got, want := version, currentVersion; got != want {
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
	opts := HasherOptions{Pepper: testPepper, Cost: bcrypt.MinCost}
	h := MustHasher(t, opts)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "hasher", h, "opts", opts)
	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v %s", h, h, h, h),
		fmt.Sprintf("%v %+v %#v %s", opts, opts, opts, opts),
		logged.String(),
	} {
		if leaks(s, testPepper) {
			t.Fatalf("pepper leaked in %q", s)
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

package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

// clock is a settable time for the services under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock                   { return &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }
func userOf(ctx context.Context) string  { return phr.UserIDFromContext(ctx) }
func bg() context.Context                { return context.Background() }
func hash(b byte) []byte                 { h := make([]byte, 32); h[0] = b; return h }

func TestParallelGuessesRunAtMostFiveComparisons(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	id := userOf(MustUser(t, d.DB, "guessed@example.com"))
	// Attack: 20 guesses at once, hoping to run more comparisons than the lockout allows.
	var wg sync.WaitGroup
	allowed := make(chan int, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := d.DB.BeginLoginAttempt(bg(), id)
			if err != nil {
				t.Error(err)
				return
			}
			if a.Allowed {
				allowed <- a.Failures
			}
		}()
	}
	wg.Wait()
	close(allowed)
	seen := map[int]bool{}
	for f := range allowed {
		seen[f] = true
	}
	if got, want := len(seen), phr.MaxFailedLogins; got != want {
		t.Fatalf("%d attempts were allowed a comparison, want %d (failure counts %v)", got, want, seen)
	}
	a, err := d.DB.FindAccount(phr.NewContextWithUserID(bg(), id))
	if err != nil {
		t.Fatal(err)
	}
	if a.LockedUntil.IsZero() {
		t.Fatal("the account is not locked after five failures")
	}
}

func TestLockoutExpiresAndIsNotExtended(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	c := newClock()
	d.DB.Now = c.Now
	id := userOf(MustUser(t, d.DB, "locked@example.com"))
	for i := 0; i < phr.MaxFailedLogins; i++ {
		if a, _ := d.DB.BeginLoginAttempt(bg(), id); !a.Allowed {
			t.Fatalf("attempt %d refused before the lock", i+1)
		}
	}
	lockedAt := c.Now()
	c.Advance(29 * time.Minute)
	// Attack: keep guessing during the lock to keep the owner out for good.
	if a, _ := d.DB.BeginLoginAttempt(bg(), id); a.Allowed {
		t.Fatal("attempt allowed while locked")
	}
	acct, _ := d.DB.FindAccount(phr.NewContextWithUserID(bg(), id))
	if got, want := acct.LockedUntil, lockedAt.Add(phr.LockoutDuration); !got.Equal(want) {
		t.Fatalf("lock until %v after an attempt during the lock, want %v (not extended)", got, want)
	}
	c.Advance(2 * time.Minute)
	a, _ := d.DB.BeginLoginAttempt(bg(), id)
	if !a.Allowed || a.Failures != 1 {
		t.Fatalf("after the lock: %+v, want a fresh count of 1", a)
	}
	// Success resets the count.
	if err := d.DB.LoginSucceeded(bg(), id); err != nil {
		t.Fatal(err)
	}
	if a, _ := d.DB.BeginLoginAttempt(bg(), id); a.Failures != 1 {
		t.Fatalf("after a success the count is %d, want 1", a.Failures)
	}
}

func TestAccountTokensAreSingleUseAndShortLived(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	c := newClock()
	d.DB.Now = c.Now
	id := userOf(MustUser(t, d.DB, "tokens@example.com"))
	exp := c.Now().Add(time.Hour)
	for i, p := range []string{phr.TokenVerifyEmail, phr.TokenPasswordReset, phr.TokenUnlock} {
		if err := d.DB.CreateAccountToken(bg(), id, p, hash(byte(i+1)), exp); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.DB.CreateAccountToken(bg(), id, phr.TokenPasswordReset, hash(9), c.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, purpose string
		hash          []byte
		ok            bool
	}{
		{"reset token spent", phr.TokenPasswordReset, hash(2), true},
		// Attack: replay a reset link from an old mail.
		{"reset token again", phr.TokenPasswordReset, hash(2), false},
		// Attack: use a verification link as a reset link.
		{"verification token as reset", phr.TokenPasswordReset, hash(1), false},
		{"unknown token", phr.TokenUnlock, hash(7), false},
		{"unlock token", phr.TokenUnlock, hash(3), true},
	}
	for _, tc := range cases {
		got, err := d.DB.SpendAccountToken(bg(), tc.purpose, tc.hash)
		if tc.ok && (err != nil || got != id) {
			t.Errorf("%s: %q, %v; want the user", tc.name, got, err)
		}
		if !tc.ok && phr.ErrorCode(err) != phr.ENOTFOUND {
			t.Errorf("%s: %v, want ENOTFOUND", tc.name, err)
		}
	}
	c.Advance(2 * time.Minute)
	// Attack: use a reset link after it expired.
	if _, err := d.DB.SpendAccountToken(bg(), phr.TokenPasswordReset, hash(9)); phr.ErrorCode(err) != phr.ENOTFOUND {
		t.Errorf("expired token: %v, want ENOTFOUND", err)
	}
}

func TestRefreshReuseEndsTheSessionButTwoTabsDoNot(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	c := newClock()
	d.DB.Now = c.Now
	ctx := MustUser(t, d.DB, "tabs@example.com")
	tab, thief := []byte("client-a"), []byte("client-b")
	s, err := d.DB.CreateSession(ctx, hash(1), c.Now().Add(phr.SessionLifetime), "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.RotateRefreshToken(bg(), hash(1), hash(2), tab); err != nil {
		t.Fatal(err)
	}
	c.Advance(3 * time.Second)
	// The second tab presents the same token: it gets the same successor back.
	if got, err := d.DB.RotateRefreshToken(bg(), hash(1), hash(2), tab); err != nil || got.ID != s.ID {
		t.Fatalf("same client within the grace period: %v, %v", got, err)
	}
	// Attack: another client replays the spent token within seconds.
	if _, err := d.DB.RotateRefreshToken(bg(), hash(1), hash(2), thief); err != phr.ErrRefreshTokenReused {
		t.Fatalf("replay by another client: %v, want ErrRefreshTokenReused", err)
	}
	// The whole family is gone: the successor no longer works, nor does the session.
	if _, err := d.DB.RotateRefreshToken(bg(), hash(2), hash(3), tab); phr.ErrorCode(err) != phr.EUNAUTHORIZED {
		t.Fatalf("successor after reuse: %v, want EUNAUTHORIZED", err)
	}
	if _, err := d.DB.CheckSession(ctx, s.ID); phr.ErrorCode(err) != phr.EUNAUTHORIZED {
		t.Fatalf("session after reuse: %v, want EUNAUTHORIZED", err)
	}

	// Attack: the same client replays a spent token after the grace period.
	s2, _ := d.DB.CreateSession(ctx, hash(10), c.Now().Add(phr.SessionLifetime), "test")
	if _, err := d.DB.RotateRefreshToken(bg(), hash(10), hash(11), tab); err != nil {
		t.Fatal(err)
	}
	c.Advance(phr.RefreshReuseGrace + time.Second)
	if _, err := d.DB.RotateRefreshToken(bg(), hash(10), hash(11), tab); err != phr.ErrRefreshTokenReused {
		t.Fatalf("replay after the grace period: %v, want ErrRefreshTokenReused", err)
	}
	if _, err := d.DB.CheckSession(ctx, s2.ID); phr.ErrorCode(err) != phr.EUNAUTHORIZED {
		t.Fatal("session still live after a late replay")
	}
}

func TestRotationNeverExtendsTheLogin(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	c := newClock()
	d.DB.Now = c.Now
	ctx := MustUser(t, d.DB, "long@example.com")
	end := c.Now().Add(phr.SessionLifetime)
	if _, err := d.DB.CreateSession(ctx, hash(0), end, "test"); err != nil { // 168 rotations fit in a byte
		t.Fatal(err)
	}
	// Refresh every hour for a week and a bit: the session ends on time all the same.
	d.DB.IdleTimeout = 2 * time.Hour
	for i := byte(0); ; i++ {
		c.Advance(time.Hour)
		s, err := d.DB.RotateRefreshToken(bg(), hash(i), hash(i+1), []byte("c"))
		if !c.Now().Before(end) {
			if err == nil {
				t.Fatalf("rotation at %v succeeded after the 7-day lifetime", c.Now())
			}
			return
		}
		if err != nil {
			t.Fatalf("rotation %d at %v: %v", i, c.Now(), err)
		}
		if !s.ExpiresAt.Equal(end) {
			t.Fatalf("rotation moved the end of the login to %v", s.ExpiresAt)
		}
	}
}

func TestIdleSessionsEnd(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	c := newClock()
	d.DB.Now = c.Now
	d.DB.IdleTimeout = 15 * time.Minute
	ctx := MustUser(t, d.DB, "idle@example.com")
	s, _ := d.DB.CreateSession(ctx, hash(1), c.Now().Add(phr.SessionLifetime), "test")
	c.Advance(14 * time.Minute)
	if _, err := d.DB.CheckSession(ctx, s.ID); err != nil {
		t.Fatalf("active session refused: %v", err)
	}
	c.Advance(14 * time.Minute) // 28 minutes after sign-in, 14 after the last request
	if _, err := d.DB.CheckSession(ctx, s.ID); err != nil {
		t.Fatalf("a request resets the idle clock: %v", err)
	}
	c.Advance(16 * time.Minute)
	if _, err := d.DB.CheckSession(ctx, s.ID); phr.ErrorCode(err) != phr.EUNAUTHORIZED {
		t.Fatalf("idle session: %v, want EUNAUTHORIZED", err)
	}
	// Attack: revive an idle session with its refresh token.
	if _, err := d.DB.RotateRefreshToken(bg(), hash(1), hash(2), []byte("c")); phr.ErrorCode(err) != phr.EUNAUTHORIZED {
		t.Fatalf("refresh of an idle session: %v, want EUNAUTHORIZED", err)
	}
}

func TestAdminFunctionsRefuseNonAdminsAndShowNoPHI(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	user := MustUser(t, d.DB, "plain@example.com")
	adm := MustUser(t, d.DB, "admin@example.com")
	victim := userOf(MustUser(t, d.DB, "victim@example.com"))
	// Attack: a plain user calls the admin functions directly.
	if _, err := d.DB.FindAccounts(user, "", 10); phr.ErrorCode(err) != phr.EFORBIDDEN {
		t.Fatalf("plain user listing accounts: %v, want EFORBIDDEN", err)
	}
	if _, err := d.DB.EndUserSessions(user, victim); phr.ErrorCode(err) != phr.EFORBIDDEN {
		t.Fatalf("plain user ending sessions: %v, want EFORBIDDEN", err)
	}
	owner := pgtest.MustPool(t, d.OwnerURL, 1)
	promote := func(mfa bool) {
		t.Helper()
		tx, err := owner.Begin(bg())
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(bg())
		tx.Exec(bg(), "SELECT set_config('app.current_user_id', $1, true)", userOf(adm))
		q := `UPDATE users SET role = 'admin' WHERE id = $1`
		if mfa {
			q = `UPDATE users SET role = 'admin', mfa_secret = email, mfa_enabled_at = now() WHERE id = $1`
		}
		if _, err := tx.Exec(bg(), q, userOf(adm)); err != nil {
			t.Fatal(err)
		}
		tx.Commit(bg())
	}
	promote(false)
	// Attack: an admin without a second factor (a phished password is enough).
	if _, err := d.DB.FindAccounts(adm, "", 10); phr.ErrorCode(err) != phr.EFORBIDDEN {
		t.Fatalf("admin without MFA: %v, want EFORBIDDEN", err)
	}
	promote(true)
	list, err := d.DB.FindAccounts(adm, "", 10)
	if err != nil || len(list) != 3 {
		t.Fatalf("admin listing: %d accounts, %v", len(list), err)
	}
	if _, err := d.DB.CreateSession(phr.NewContextWithUserID(bg(), victim), hash(5), time.Now().Add(time.Hour), "x"); err != nil {
		t.Fatal(err)
	}
	if n, err := d.DB.EndUserSessions(adm, victim); err != nil || n != 1 {
		t.Fatalf("end sessions: %d, %v", n, err)
	}
	if _, err := d.DB.EndUserSessions(adm, "00000000-0000-4000-8000-000000000000"); phr.ErrorCode(err) != phr.ENOTFOUND {
		t.Fatalf("unknown user: %v, want ENOTFOUND", err)
	}
	if err := d.DB.SetUserDisabled(adm, victim, true); err != nil {
		t.Fatal(err)
	}
	if a, _ := d.DB.BeginLoginAttempt(bg(), victim); a.Allowed {
		t.Fatal("a disabled account may still try its password")
	}
	// The admin still cannot read the victim's PHI: RLS scopes every plain query to the admin.
	if _, err := d.DB.FindUserByID(adm, victim); phr.ErrorCode(err) != phr.ENOTFOUND {
		t.Fatalf("admin reading another user's profile: %v, want ENOTFOUND", err)
	}
}

func TestRateLimitWindowsAreShared(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	c := newClock()
	// Two limiters on separate pools stand for two serve processes.
	a := &postgres.RateLimiter{Pool: d.DB.Pool, Keys: d.DB.Keys, Now: c.Now}
	b := &postgres.RateLimiter{Pool: pgtest.MustPool(t, d.AppURL, 2), Keys: d.DB.Keys, Now: c.Now}
	for i := 0; i < 3; i++ {
		l := a
		if i%2 == 1 {
			l = b
		}
		if ok, _, err := l.Allow(bg(), "ip:203.0.113.9", 3, time.Minute); !ok || err != nil {
			t.Fatalf("hit %d refused: %v", i+1, err)
		}
	}
	c.Advance(20 * time.Second)
	ok, retry, err := b.Allow(bg(), "ip:203.0.113.9", 3, time.Minute)
	if ok || err != nil {
		t.Fatalf("fourth hit across processes allowed (%v)", err)
	}
	if retry != 40*time.Second {
		t.Fatalf("retry after %v, want 40s", retry)
	}
	if ok, _, _ := a.Allow(bg(), "ip:203.0.113.10", 3, time.Minute); !ok {
		t.Fatal("another key shares the count")
	}
	c.Advance(41 * time.Second)
	if ok, _, _ := a.Allow(bg(), "ip:203.0.113.9", 3, time.Minute); !ok {
		t.Fatal("a new window did not start")
	}
	// The table holds keyed hashes, not addresses.
	var n int
	if err := d.DB.Pool.QueryRow(bg(), `SELECT count(*) FROM rate_limits WHERE position('203.0.113' in encode(bucket, 'escape')) > 0`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rate_limits holds a plain address (%d rows, %v)", n, err)
	}
}

func TestLongDeviceNamesAreCutAtACharacter(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := MustUser(t, d.DB, "ua@example.com")
	// A user agent of 3-byte characters whose cap falls inside one.
	if _, err := d.DB.CreateSession(ctx, hash(1), time.Now().Add(time.Hour), strings.Repeat("€", 100)); err != nil {
		t.Fatalf("session with a long non-ASCII user agent: %v", err)
	}
}

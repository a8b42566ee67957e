package web_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/web"
)

// totpCode computes an RFC 6238 code (SHA-1, 6 digits, 30 s), written here from the RFC so
// that the server's implementation is checked against an independent one.
func totpCode(t *testing.T, secretB32 string, at time.Time) string {
	t.Helper()
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secretB32)
	if err != nil {
		t.Fatal(err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(at.Unix()/30))
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1000000)
}

func (e *testEnv) signIn(email, password string, extra ...string) *response {
	e.t.Helper()
	body := map[string]string{"email": email, "password": password}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	return e.do("POST", "/api/auth/token", "", body)
}

// linkToken returns the token= of the link to path in the newest mail to the address.
func (e *testEnv) linkToken(to, path string) string {
	e.t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(path) + `\?token=([A-Za-z0-9_%-]+)`)
	ms := e.mails()
	for i := len(ms) - 1; i >= 0; i-- {
		if !strings.Contains(ms[i].Header.Get("To"), to) {
			continue
		}
		text, _ := readBody(ms[i])
		if m := re.FindStringSubmatch(text); m != nil {
			return m[1]
		}
	}
	e.t.Fatalf("no mail to %s with a %s link", to, path)
	return ""
}

func (e *testEnv) countMails(to, subject string) int {
	e.t.Helper()
	n := 0
	for _, m := range e.mails() {
		if strings.Contains(m.Header.Get("To"), to) && strings.Contains(m.Header.Get("Subject"), subject) {
			n++
		}
	}
	return n
}

func (e *testEnv) countAudit(action string) int {
	n := 0
	for _, a := range e.auditRows() {
		if a.Action == action {
			n++
		}
	}
	return n
}

func TestLockoutAfterFiveFailures(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.MustVerifiedUser("ana@example.com")
	wrong := e.signIn("ana@example.com", "Wrong-Passw0rd!")
	// Attack: case, spacing and Unicode-normalisation variants of the address count as the
	// same account, so they cannot multiply the guesses.
	for _, variant := range []string{"ANA@example.com", "Ana@Example.com", "ana@EXAMPLE.COM", "ana@example.com"} {
		if r := e.signIn(variant, "Wrong-Passw0rd!"); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", r.status)
		}
	}
	// Locked now: the right password gets exactly the wrong-password answer.
	locked := e.signIn("ana@example.com", testPassword)
	if locked.status != wrong.status || withoutRequestID(locked.body) != withoutRequestID(wrong.body) {
		t.Fatalf("locked account with the right password: %d %s, want %d %s", locked.status, locked.body, wrong.status, wrong.body)
	}
	if got := e.countMails("ana@example.com", "locked"); got != 1 {
		t.Fatalf("%d lockout mails, want 1", got)
	}
	if got := e.countAudit("EVENT account.locked"); got != 1 {
		t.Fatalf("%d account.locked events in the trail, want 1", got)
	}
	if !strings.Contains(e.logs.String(), `"event":"account.locked"`) {
		t.Fatal("the lockout is not in the log")
	}
	// The owner unlocks with the mailed link, once.
	token := e.linkToken("ana@example.com", "/unlock")
	if r := e.do("POST", "/api/auth/unlock", "", map[string]string{"token": token}); r.status != http.StatusOK {
		t.Fatalf("unlock: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/auth/unlock", "", map[string]string{"token": token}); r.status != http.StatusBadRequest {
		t.Fatalf("unlock link used twice: %d, want 400", r.status)
	}
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusOK {
		t.Fatalf("sign-in after unlock: %d %s", r.status, r.body)
	}
}

func TestParallelWrongGuessesLockAtOnce(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.MustVerifiedUser("ana@example.com")
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- e.signIn("ana@example.com", "Wrong-Passw0rd!").status
		}()
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != http.StatusUnauthorized {
			t.Fatalf("a parallel guess got %d, want 401", st)
		}
	}
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusUnauthorized {
		t.Fatalf("right password after 20 parallel guesses: %d, want 401 (locked)", r.status)
	}
	if got := e.countMails("ana@example.com", "locked"); got != 1 {
		t.Fatalf("%d lockout mails, want exactly 1", got)
	}
}

func TestRefreshTokenReuseEndsTheSession(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.MustVerifiedUser("ana@example.com")
	pair := e.signIn("ana@example.com", testPassword).json(t)
	stolen := pair["refresh_token"].(string)
	next := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": stolen}).json(t)
	// Attack: a thief (another client) presents the refresh token the user already spent.
	r := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": stolen}, "User-Agent", "thief/1.0")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("reuse by another client: %d, want 401", r.status)
	}
	// The whole family is revoked: the user's current tokens die too.
	if r := e.do("GET", "/api/me", next["access_token"].(string), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("access token after reuse: %d, want 401", r.status)
	}
	if r := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": next["refresh_token"].(string)}); r.status != http.StatusUnauthorized {
		t.Fatalf("successor after reuse: %d, want 401", r.status)
	}
	if got := e.countAudit("EVENT refresh_token.reused"); got != 1 {
		t.Fatalf("%d refresh_token.reused events, want 1", got)
	}
	// Attack: an access token offered as a refresh token, and the reverse.
	if r := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": pair["access_token"].(string)}); r.status != http.StatusUnauthorized && r.status != http.StatusBadRequest {
		t.Fatalf("access token as refresh token: %d", r.status)
	}
	if r := e.do("GET", "/api/me", stolen, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("refresh token as access token: %d", r.status)
	}
	// Attack: an oversize bearer token.
	if r := e.do("GET", "/api/me", strings.Repeat("a", 20000), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("oversize token: %d", r.status)
	}
}

func TestUsersListAndEndTheirSessions(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	phone := e.MustVerifiedUser("ana@example.com")
	laptop := e.signIn("ana@example.com", testPassword).json(t)["access_token"].(string)
	bob := e.MustVerifiedUser("bob@example.com")
	r := e.do("GET", "/api/sessions", phone, nil)
	if r.status != http.StatusOK {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	items := r.json(t)["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("%d sessions listed, want 2", len(items))
	}
	var other string
	current := 0
	for _, it := range items {
		s := it.(map[string]any)
		if s["current"] == true {
			current++
		} else {
			other = s["id"].(string)
		}
		if s["device"] == "" || s["created_at"] == nil || s["last_seen_at"] == nil {
			t.Fatalf("session item lacks device or times: %v", s)
		}
	}
	if current != 1 {
		t.Fatalf("%d sessions marked current, want 1", current)
	}
	// Attack: end another user's session by id.
	if r := e.do("DELETE", "/api/sessions/"+other, bob, nil); r.status != http.StatusNotFound {
		t.Fatalf("another user's session: %d, want 404", r.status)
	}
	if r := e.do("DELETE", "/api/sessions/"+other, phone, nil); r.status != http.StatusNoContent {
		t.Fatalf("end own session: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/me", laptop, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("ended session still works: %d", r.status)
	}
	if r := e.do("DELETE", "/api/sessions", phone, nil); r.status != http.StatusNoContent {
		t.Fatalf("end all: %d", r.status)
	}
	if r := e.do("GET", "/api/me", phone, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("after ending all sessions: %d", r.status)
	}
	if r := e.do("GET", "/api/me", bob, nil); r.status != http.StatusOK {
		t.Fatalf("another user's session was ended: %d", r.status)
	}
}

func TestPasswordChangeEndsEveryOtherSession(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	current := e.MustVerifiedUser("ana@example.com")
	other := e.signIn("ana@example.com", testPassword).json(t)
	const newPassword = "Another-Str0ng-One!"
	// A wrong current password is refused (and counts towards the lockout).
	r := e.do("POST", "/api/me/password", current, map[string]string{"current_password": "Wrong-Passw0rd!", "new_password": newPassword})
	if r.status != http.StatusBadRequest || r.json(t)["field"] != "current_password" {
		t.Fatalf("wrong current password: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/me/password", current, map[string]string{"current_password": testPassword, "new_password": newPassword})
	if r.status != http.StatusOK {
		t.Fatalf("change: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/me", current, nil); r.status != http.StatusOK {
		t.Fatalf("the session that changed the password ended: %d", r.status)
	}
	if r := e.do("GET", "/api/me", other["access_token"].(string), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("other session after a password change: %d, want 401", r.status)
	}
	if r := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": other["refresh_token"].(string)}); r.status != http.StatusUnauthorized {
		t.Fatalf("other session's refresh token after a password change: %d", r.status)
	}
	if got := e.countMails("ana@example.com", "password was changed"); got != 1 {
		t.Fatalf("%d notices to the address, want 1", got)
	}
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusUnauthorized {
		t.Fatalf("old password still works: %d", r.status)
	}
	if r := e.signIn("ana@example.com", newPassword); r.status != http.StatusOK {
		t.Fatalf("new password: %d", r.status)
	}
}

func TestPasswordResetByMail(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	session := e.MustVerifiedUser("ana@example.com")
	known := e.do("POST", "/api/auth/password-reset", "", map[string]string{"email": "ana@example.com"})
	unknown := e.do("POST", "/api/auth/password-reset", "", map[string]string{"email": "nobody@example.com"})
	// Attack: find out who has an account through the reset form.
	if known.status != http.StatusAccepted || known.status != unknown.status || string(known.body) != string(unknown.body) {
		t.Fatalf("reset answers differ: %d %s / %d %s", known.status, known.body, unknown.status, unknown.body)
	}
	if got := e.countMails("nobody@example.com", ""); got != 0 {
		t.Fatalf("mail sent to an unknown address")
	}
	token := e.linkToken("ana@example.com", "/reset-password")
	const newPassword = "Reset-Passw0rd!!"
	weak := e.do("POST", "/api/auth/password-reset/confirm", "", map[string]string{"token": token, "new_password": "short"})
	if weak.status != http.StatusBadRequest {
		t.Fatalf("weak new password: %d", weak.status)
	}
	r := e.do("POST", "/api/auth/password-reset/confirm", "", map[string]string{"token": token, "new_password": newPassword})
	if r.status != http.StatusOK {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	// Attack: replay the link.
	if r := e.do("POST", "/api/auth/password-reset/confirm", "", map[string]string{"token": token, "new_password": "Third-Passw0rd!!"}); r.status != http.StatusBadRequest {
		t.Fatalf("reset link used twice: %d, want 400", r.status)
	}
	if r := e.do("GET", "/api/me", session, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("session survived a password reset: %d", r.status)
	}
	if r := e.signIn("ana@example.com", newPassword); r.status != http.StatusOK {
		t.Fatalf("sign-in with the new password: %d", r.status)
	}
}

func TestResendVerificationAnswersTheSame(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.do("POST", "/api/auth/register", "", map[string]string{"email": "new@example.com", "password": testPassword,
		"full_name": "New Person", "date_of_birth": "1990-01-01"})
	a := e.do("POST", "/api/auth/resend-verification", "", map[string]string{"email": "new@example.com"})
	b := e.do("POST", "/api/auth/resend-verification", "", map[string]string{"email": "nobody@example.com"})
	if a.status != http.StatusAccepted || a.status != b.status || string(a.body) != string(b.body) {
		t.Fatalf("resend answers differ: %d %s / %d %s", a.status, a.body, b.status, b.body)
	}
	if got := e.countMails("new@example.com", "Verify"); got != 2 {
		t.Fatalf("%d verification mails, want 2", got)
	}
	token := e.linkToken("new@example.com", "/verify-email")
	if r := e.do("POST", "/api/auth/verify-email", "", map[string]string{"token": token}); r.status != http.StatusOK {
		t.Fatalf("verify with the resent link: %d", r.status)
	}
}

func TestTOTPSecondFactor(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	token := e.MustVerifiedUser("ana@example.com")
	r := e.do("POST", "/api/me/mfa/totp", token, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("enrol: %d %s", r.status, r.body)
	}
	enrol := r.json(t)
	secret := enrol["secret"].(string)
	if !strings.HasPrefix(enrol["otpauth_url"].(string), "otpauth://totp/") {
		t.Fatalf("otpauth_url = %v", enrol["otpauth_url"])
	}
	if r := e.do("POST", "/api/me/mfa/totp/confirm", token, map[string]string{"otp": "000000"}); r.status != http.StatusBadRequest {
		t.Fatalf("confirm with a wrong code: %d", r.status)
	}
	now := time.Now()
	r = e.do("POST", "/api/me/mfa/totp/confirm", token, map[string]string{"otp": totpCode(t, secret, now)})
	if r.status != http.StatusOK {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	codes := r.json(t)["recovery_codes"].([]any)
	if len(codes) < 8 {
		t.Fatalf("%d recovery codes", len(codes))
	}
	if r := e.do("POST", "/api/me/mfa/totp", token, nil); r.status != http.StatusConflict {
		t.Fatalf("second enrolment while on: %d, want 409", r.status)
	}
	// The password alone is no longer enough.
	r = e.signIn("ana@example.com", testPassword)
	if r.status != http.StatusUnauthorized || r.json(t)["code"] != "mfa_required" {
		t.Fatalf("sign-in without a code: %d %s", r.status, r.body)
	}
	// Attack: replay the code that confirmed the enrolment.
	if r := e.signIn("ana@example.com", testPassword, "otp", totpCode(t, secret, now)); r.status != http.StatusUnauthorized {
		t.Fatalf("replayed code: %d, want 401", r.status)
	}
	next := totpCode(t, secret, now.Add(30*time.Second))
	if r := e.signIn("ana@example.com", testPassword, "otp", next); r.status != http.StatusOK {
		t.Fatalf("sign-in with the next code: %d %s", r.status, r.body)
	}
	// A recovery code works once, typed loosely.
	code := strings.ToUpper(codes[0].(string))
	if r := e.signIn("ana@example.com", testPassword, "otp", code); r.status != http.StatusOK {
		t.Fatalf("recovery code: %d %s", r.status, r.body)
	}
	if r := e.signIn("ana@example.com", testPassword, "otp", code); r.status != http.StatusUnauthorized {
		t.Fatalf("recovery code used twice: %d", r.status)
	}
	// Attack: guess codes with the right password; wrong codes count towards the lockout.
	for i := 0; i < 4; i++ {
		e.signIn("ana@example.com", testPassword, "otp", "123456")
	}
	if r := e.signIn("ana@example.com", testPassword, "otp", totpCode(t, secret, now.Add(60*time.Second))); r.status != http.StatusUnauthorized {
		t.Fatalf("valid code after 5 wrong ones: %d, want 401 (locked)", r.status)
	}
}

func TestAuthEndpointsAreRateLimited(t *testing.T) {
	t.Parallel()
	e := MustEnv(t, func(o *web.Options) {
		o.Limits = web.RateLimits{PerIP: web.RateLimit{N: 1000, Window: time.Minute}, PerAccount: web.RateLimit{N: 7, Window: 15 * time.Minute}}
	})
	e.MustVerifiedUser("ana@example.com")
	e.MustVerifiedUser("bob@example.com")
	// Ana is locked after five guesses; past the account limit she still sees the lockout
	// answer, never a bare 429 that would tell a guesser the account is special.
	for i := 0; i < 8; i++ {
		if r := e.signIn("ana@example.com", "Wrong-Passw0rd!"); r.status != http.StatusUnauthorized {
			t.Fatalf("guess %d at a locked account: %d, want 401", i+1, r.status)
		}
	}
	// Bob is not locked: past the account limit he gets 429 with Retry-After.
	var last *response
	for i := 0; i < 8; i++ {
		last = e.signIn("bob@example.com", testPassword)
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
		t.Fatalf("past the account limit: %d Retry-After=%q", last.status, last.header.Get("Retry-After"))
	}

	// Per address: a second server on the same database (another process) shares the count.
	e2 := MustEnv(t, func(o *web.Options) {
		o.Limits = web.RateLimits{PerIP: web.RateLimit{N: 3, Window: time.Minute}}
	})
	for i := 0; i < 3; i++ {
		e2.do("POST", "/api/auth/password-reset", "", map[string]string{"email": fmt.Sprintf("x%d@example.com", i)})
	}
	r := e2.do("POST", "/api/auth/register", "", map[string]string{"email": "y@example.com"})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("past the address limit: %d %s", r.status, r.body)
	}
}

func TestAdminsNeedMFAAndSeeNoPHI(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	admin := e.MustVerifiedUser("admin@example.com")
	user := e.MustVerifiedUser("ana@example.com")
	if r := e.do("GET", "/api/admin/users", user, nil); r.status != http.StatusForbidden {
		t.Fatalf("plain user on admin endpoint: %d, want 403", r.status)
	}
	// Attack: a role smuggled in a registration body.
	r := e.do("POST", "/api/auth/register", "", map[string]string{"email": "mallory@example.com", "password": testPassword,
		"full_name": "M", "date_of_birth": "1990-01-01", "role": "admin"})
	if r.status != http.StatusBadRequest {
		t.Fatalf("register with a role: %d, want 400", r.status)
	}
	adminID := e.do("GET", "/api/me", admin, nil).json(t)["id"].(string)
	e.mustRole(adminID, "admin")
	if r := e.do("GET", "/api/admin/users", admin, nil); r.status != http.StatusForbidden {
		t.Fatalf("admin without MFA: %d, want 403", r.status)
	}
	e.mustAdminWithMFA(admin)
	r = e.do("GET", "/api/admin/users", admin, nil)
	if r.status != http.StatusOK {
		t.Fatalf("admin list: %d %s", r.status, r.body)
	}
	for _, leak := range []string{"ana@example.com", "Person", "1980-02-03"} {
		if strings.Contains(string(r.body), leak) {
			t.Fatalf("admin listing shows PHI %q: %s", leak, r.body)
		}
	}
	var anaID string
	for _, it := range r.json(t)["items"].([]any) {
		if m := it.(map[string]any); m["id"] != adminID {
			anaID = m["id"].(string)
		}
	}
	if r := e.do("DELETE", "/api/admin/users/"+anaID+"/sessions", admin, nil); r.status != http.StatusOK || r.json(t)["ended"] != 1.0 {
		t.Fatalf("end sessions: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/me", user, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("user session after admin ended it: %d", r.status)
	}
	if r := e.do("POST", "/api/admin/users/"+anaID+"/lock", admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("lock: %d", r.status)
	}
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusUnauthorized {
		t.Fatalf("sign-in while locked by an admin: %d", r.status)
	}
	e.do("POST", "/api/admin/users/"+anaID+"/unlock", admin, nil)
	fresh := e.signIn("ana@example.com", testPassword).json(t)["access_token"].(string)
	if r := e.do("POST", "/api/admin/users/"+anaID+"/disable", admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("disable: %d", r.status)
	}
	if r := e.do("GET", "/api/me", fresh, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("session of a disabled account: %d", r.status)
	}
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusUnauthorized {
		t.Fatalf("sign-in of a disabled account: %d", r.status)
	}
	if r := e.do("POST", "/api/admin/users/00000000-0000-4000-8000-000000000000/lock", admin, nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown user: %d, want 404", r.status)
	}
	// Admins cannot read health data: another user's records are as invisible as ever.
	if r := e.do("GET", "/api/test-results", admin, nil); r.status != http.StatusOK || strings.Contains(string(r.body), anaID) {
		t.Fatalf("admin reading results: %d %s", r.status, r.body)
	}
	if got := e.countAudit("EVENT admin.user_disabled"); got != 1 {
		t.Fatalf("%d admin.user_disabled events", got)
	}
}

func TestLoginFloodIsShedNotQueued(t *testing.T) {
	t.Parallel()
	// One bcrypt worker, a short queue and a short wait: a flood must be answered at once
	// with 503 and Retry-After instead of piling up, and other endpoints keep serving.
	hasher, err := auth.NewHasher(auth.HasherOptions{Pepper: bytes.Repeat([]byte{7}, 32), Cost: 10,
		Workers: 1, MaxQueue: 2, MaxWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := MustEnv(t)
	token := e.MustVerifiedUser("ana@example.com")
	srv, err := web.NewServer(func() web.Options { o := e.opts; o.Hasher = hasher; return o }())
	if err != nil {
		t.Fatal(err)
	}
	flood := httptest.NewServer(srv)
	defer flood.Close()
	var wg sync.WaitGroup
	var shed, denied atomic.Int32
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(flood.URL+"/api/auth/token", "application/json",
				strings.NewReader(fmt.Sprintf(`{"email":"nobody%d@example.com","password":"Wrong-Passw0rd!"}`, i)))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusServiceUnavailable:
				if resp.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				shed.Add(1)
			case http.StatusUnauthorized:
				denied.Add(1)
			default:
				t.Errorf("flooded login answered %d", resp.StatusCode)
			}
		}()
	}
	// Meanwhile health data is served.
	req, _ := http.NewRequest("GET", flood.URL+"/api/test-results", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("test results during the flood: %v %v", resp, err)
	}
	resp.Body.Close()
	wg.Wait()
	if shed.Load() == 0 || denied.Load() == 0 {
		t.Fatalf("%d shed, %d compared: want both", shed.Load(), denied.Load())
	}
}

func TestSignInRehashesAnOlderPepperOrCost(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.MustVerifiedUser("ana@example.com")
	storedHash := func() string {
		t.Helper()
		ctx := context.Background()
		var h string
		tx, _ := e.owner.Begin(ctx)
		defer tx.Rollback(ctx)
		for _, a := range e.auditRows() {
			if a.UserID != "" {
				tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", a.UserID)
				break
			}
		}
		if err := tx.QueryRow(ctx, "SELECT password_hash FROM users").Scan(&h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	if h := storedHash(); !strings.HasPrefix(h, "$vnp1$$2a$04$") {
		t.Fatalf("stored hash %.13s…, want pepper 1 at cost 4", h)
	}
	// The operator introduces pepper 2 (keeping 1) and raises the cost.
	hasher, err := auth.NewHasher(auth.HasherOptions{Peppers: map[int][]byte{1: bytes.Repeat([]byte{7}, 32),
		2: bytes.Repeat([]byte{8}, 32)}, CurrentPepper: 2, Cost: 5})
	if err != nil {
		t.Fatal(err)
	}
	o := e.opts
	o.Hasher = hasher
	srv, err := web.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	resp, err := http.Post(hs.URL+"/api/auth/token", "application/json",
		strings.NewReader(`{"email":"ana@example.com","password":"`+testPassword+`"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in against the old hash: %v %v", resp, err)
	}
	resp.Body.Close()
	if h := storedHash(); !strings.HasPrefix(h, "$vnp2$$2a$05$") {
		t.Fatalf("after sign-in the stored hash is %.13s…, want pepper 2 at cost 5", h)
	}
}

func TestPasswordChangeWithoutCurrentPasswordOnlyRightAfterSignIn(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	token := e.MustVerifiedUser("ana@example.com")
	// 16 minutes later (a second server on the same database whose clock is ahead).
	o := e.opts
	o.Now = func() time.Time { return time.Now().Add(16 * time.Minute) }
	srv, err := web.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	later := httptest.NewServer(srv)
	defer later.Close()
	body := `{"new_password":"Another-Str0ng-One!"}`
	req, _ := http.NewRequest("POST", later.URL+"/api/me/password", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Attack: a borrowed, long-open session changes the password without knowing it.
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("change without the current password 16 minutes after sign-in: %d, want 400", resp.StatusCode)
	}
	if r := e.do("POST", "/api/me/password", token, body); r.status != http.StatusOK {
		t.Fatalf("change without the current password right after sign-in: %d %s", r.status, r.body)
	}
}

func TestEmailChangeIsConfirmedByTheNewAddressAndToldToTheOld(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	token := e.MustVerifiedUser("ana@example.com")
	e.MustVerifiedUser("bob@example.com")
	// Attack: a wrong current password.
	if r := e.do("POST", "/api/me/email", token, map[string]string{"current_password": "Wrong-Passw0rd!", "new_email": "ana@new.example"}); r.status != http.StatusBadRequest {
		t.Fatalf("wrong current password: %d", r.status)
	}
	r := e.do("POST", "/api/me/email", token, map[string]string{"current_password": testPassword, "new_email": "ana@new.example"})
	if r.status != http.StatusAccepted {
		t.Fatalf("change: %d %s", r.status, r.body)
	}
	if got := e.countMails("ana@example.com", "change of your VitalNexa email"); got != 1 {
		t.Fatalf("%d notices to the old address, want 1", got)
	}
	link := e.linkToken("ana@new.example", "/confirm-email")
	// Nothing changes before the new address confirms.
	if me := e.do("GET", "/api/me", token, nil).json(t); me["email"] != "ana@example.com" {
		t.Fatalf("email changed before confirmation: %v", me["email"])
	}
	if r := e.do("POST", "/api/auth/confirm-email", "", map[string]string{"token": link}); r.status != http.StatusOK {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/auth/confirm-email", "", map[string]string{"token": link}); r.status != http.StatusBadRequest {
		t.Fatalf("confirm link used twice: %d", r.status)
	}
	if me := e.do("GET", "/api/me", token, nil).json(t); me["email"] != "ana@new.example" {
		t.Fatalf("email after confirmation: %v", me["email"])
	}
	if got := e.countMails("ana@example.com", "address was changed"); got != 1 {
		t.Fatalf("%d change notices to the old address", got)
	}
	if r := e.signIn("ANA@new.example", testPassword); r.status != http.StatusOK {
		t.Fatalf("sign-in with the new address: %d", r.status)
	}
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusUnauthorized {
		t.Fatalf("sign-in with the old address: %d", r.status)
	}
	// Attack: take over another account's address. The answer is the one any change gets,
	// so it does not tell that bob has an account; bob hears of it, and no link goes out.
	if r := e.do("POST", "/api/me/email", token, map[string]string{"current_password": testPassword, "new_email": "bob@example.com"}); r.status != http.StatusAccepted {
		t.Fatalf("change to a taken address: %d %s, want the usual answer", r.status, r.body)
	}
	if got := e.countMails("bob@example.com", "given for another VitalNexa account"); got != 1 {
		t.Fatalf("%d notices to the owner of the taken address, want 1", got)
	}
	if got := e.countMails("bob@example.com", "Confirm"); got != 0 {
		t.Fatalf("%d confirmation links to another account's address", got)
	}
	// An address that is free when asked for and taken before the link is followed.
	e.do("POST", "/api/me/email", token, map[string]string{"current_password": testPassword, "new_email": "carol@example.com"})
	late := e.linkToken("carol@example.com", "/confirm-email")
	e.MustVerifiedUser("carol@example.com")
	if r := e.do("POST", "/api/auth/confirm-email", "", map[string]string{"token": late}); r.status != http.StatusBadRequest {
		t.Fatalf("confirm an address taken meanwhile: %d %s", r.status, r.body)
	}
	if r := e.signIn("carol@example.com", testPassword); r.status != http.StatusOK {
		t.Fatalf("carol after the attempt: %d", r.status)
	}
	if r := e.signIn("bob@example.com", testPassword); r.status != http.StatusOK {
		t.Fatalf("bob after the attempt: %d", r.status)
	}
}

func TestLinksInFlightDieWhenTheAccountMovesOn(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	token := e.MustVerifiedUser("ana@example.com")

	// Attack: a thief with a fresh session asks to move the account to their address; the
	// owner resets the password as the notice says. The thief's link must be dead.
	e.do("POST", "/api/me/email", token, map[string]string{"new_email": "thief@evil.example"})
	stolen := e.linkToken("thief@evil.example", "/confirm-email")
	e.do("POST", "/api/auth/password-reset", "", map[string]string{"email": "ana@example.com"})
	reset := e.linkToken("ana@example.com", "/reset-password")
	if r := e.do("POST", "/api/auth/password-reset/confirm", "", map[string]string{"token": reset, "new_password": "Owner-Passw0rd-2!"}); r.status != http.StatusOK {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/auth/confirm-email", "", map[string]string{"token": stolen}); r.status != http.StatusBadRequest {
		t.Fatalf("email change confirmed after the owner's reset: %d", r.status)
	}

	// Attack: a reset link mailed to the old address works after the account moved.
	tok := e.signIn("ana@example.com", "Owner-Passw0rd-2!").json(t)["access_token"].(string)
	e.do("POST", "/api/auth/password-reset", "", map[string]string{"email": "ana@example.com"})
	oldReset := e.linkToken("ana@example.com", "/reset-password")
	e.do("POST", "/api/me/email", tok, map[string]string{"new_email": "ana@new.example"})
	if r := e.do("POST", "/api/auth/confirm-email", "", map[string]string{"token": e.linkToken("ana@new.example", "/confirm-email")}); r.status != http.StatusOK {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/auth/password-reset/confirm", "", map[string]string{"token": oldReset, "new_password": "Hijack-Passw0rd-1!"}); r.status != http.StatusBadRequest {
		t.Fatalf("old-address reset link after the move: %d", r.status)
	}

	// Attack: a reset link requested before a password change still overwrites it.
	e.do("POST", "/api/auth/password-reset", "", map[string]string{"email": "ana@new.example"})
	early := e.linkToken("ana@new.example", "/reset-password")
	if r := e.do("POST", "/api/me/password", tok, map[string]string{"current_password": "Owner-Passw0rd-2!", "new_password": "Owner-Passw0rd-3!"}); r.status != http.StatusOK {
		t.Fatalf("change: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/auth/password-reset/confirm", "", map[string]string{"token": early, "new_password": "Hijack-Passw0rd-1!"}); r.status != http.StatusBadRequest {
		t.Fatalf("reset link from before a password change: %d", r.status)
	}
}

func TestStrangersCannotKeepTheOwnerOut(t *testing.T) {
	t.Parallel()
	e := MustEnv(t, func(o *web.Options) {
		o.Limits = web.RateLimits{PerIP: web.RateLimit{N: 1000, Window: time.Minute}, PerAccount: web.RateLimit{N: 8, Window: 15 * time.Minute}}
	})
	e.MustVerifiedUser("ana@example.com")
	// Attack: flood the owner's address with reset requests to use up their sign-ins.
	for i := 0; i < 10; i++ {
		e.do("POST", "/api/auth/password-reset", "", map[string]string{"email": "ANA@example.com"})
	}
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusOK {
		t.Fatalf("sign-in after a flood of reset requests: %d", r.status)
	}
	// Attack: lock the account and keep guessing past the account limit.
	for i := 0; i < 10; i++ {
		e.signIn("ana@example.com", "Wrong-Passw0rd!")
	}
	if r := e.do("POST", "/api/auth/unlock", "", map[string]string{"token": e.linkToken("ana@example.com", "/unlock")}); r.status != http.StatusOK {
		t.Fatalf("unlock: %d", r.status)
	}
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusOK {
		t.Fatalf("the owner after the unlock link: %d %s", r.status, r.body)
	}
}

func TestAdminLockOutlivesOldUnlockLinks(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	admin := e.MustVerifiedUser("admin@example.com")
	e.MustVerifiedUser("ana@example.com")
	adminID := e.mustAdminWithMFA(admin)
	for i := 0; i < 5; i++ {
		e.signIn("ana@example.com", "Wrong-Passw0rd!")
	}
	unlock := e.linkToken("ana@example.com", "/unlock")
	var anaID string
	for _, it := range e.do("GET", "/api/admin/users", admin, nil).json(t)["items"].([]any) {
		if m := it.(map[string]any); m["id"] != adminID {
			anaID = m["id"].(string)
		}
	}
	if r := e.do("POST", "/api/admin/users/"+anaID+"/lock", admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("admin lock: %d %s", r.status, r.body)
	}
	// Attack: the unlock link from the earlier lockout lifts the admin's lock.
	e.do("POST", "/api/auth/unlock", "", map[string]string{"token": unlock})
	if r := e.signIn("ana@example.com", testPassword); r.status != http.StatusUnauthorized {
		t.Fatalf("sign-in after an old unlock link under an admin lock: %d", r.status)
	}
}

func TestCookieRefreshRefusesCrossSiteRequests(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.MustVerifiedUser("ana@example.com")
	r := e.do("POST", "/api/auth/login", "", map[string]string{"email": "ana@example.com", "password": testPassword})
	var refresh string
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "__Host-vitalnexa_refresh" {
			refresh = c.Value
		}
	}
	// Attack: another site makes the browser refresh, to rotate the victim's tokens.
	r = e.do("POST", "/api/auth/refresh", "", nil, "Cookie", "__Host-vitalnexa_refresh="+refresh, "Origin", "https://evil.example")
	if r.status != http.StatusForbidden {
		t.Fatalf("cross-site cookie refresh: %d, want 403", r.status)
	}
	// Attack: a refresh that does not say where it came from.
	r = e.do("POST", "/api/auth/refresh", "", nil, "Cookie", "__Host-vitalnexa_refresh="+refresh)
	if r.status != http.StatusForbidden {
		t.Fatalf("cookie refresh without an Origin: %d, want 403", r.status)
	}
	r = e.do("POST", "/api/auth/refresh", "", nil, "Cookie", "__Host-vitalnexa_refresh="+refresh, "Origin", "http://vitalnexa.test", "Sec-Fetch-Site", "same-origin")
	if r.status != http.StatusOK {
		t.Fatalf("same-site cookie refresh: %d %s", r.status, r.body)
	}
}

package web_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestRegisterVerifyAndSignIn(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	reg := map[string]string{"email": "ana@example.com", "password": testPassword, "full_name": "Ana Example", "date_of_birth": "1980-04-01"}
	first := e.do("POST", "/api/auth/register", "", reg)
	if first.status != http.StatusAccepted {
		t.Fatalf("register: %d %s", first.status, first.body)
	}
	// Before verification nothing is served: sign-in is refused after the password checks out.
	r := e.do("POST", "/api/auth/token", "", map[string]string{"email": "ana@example.com", "password": testPassword})
	if got, want := r.status, http.StatusForbidden; got != want {
		t.Fatalf("token before verification: %d, want %d (%s)", got, want, r.body)
	}
	// Registering a taken email (in another case) answers exactly the same, and mails the owner instead.
	again := e.do("POST", "/api/auth/register", "", map[string]string{"email": "ANA@example.com", "password": testPassword, "full_name": "Someone Else", "date_of_birth": "1990-01-01"})
	if again.status != first.status || string(again.body) != string(first.body) {
		t.Fatalf("register of a taken email: %d %s, want %d %s", again.status, again.body, first.status, first.body)
	}
	e.do("POST", "/api/auth/register", "", map[string]string{"email": "new@example.com", "password": testPassword, "full_name": "N", "date_of_birth": "1990-01-01"})
	ms := e.mails()
	if len(ms) != 3 {
		t.Fatalf("mails = %d, want 3", len(ms))
	}
	if got := e.countMails("ana@example.com", "already have"); got != 1 {
		t.Fatalf("%d 'already have an account' notices to the owner, want 1", got)
	}
	for _, m := range ms {
		b, _ := readBody(m)
		if strings.Contains(b, "Ana Example") || strings.Contains(b, "1980-04-01") {
			t.Fatalf("a mail carries PHI: %q", b)
		}
	}
	token := e.MustVerifiedUser("bea@example.com")
	if r := e.do("GET", "/api/me", token, nil); r.status != http.StatusOK || r.json(t)["email"] != "bea@example.com" {
		t.Fatalf("me: %d %s", r.status, r.body)
	}
	// A verification token works once.
	text, _ := readBody(e.mails()[len(e.mails())-1])
	m := tokenInLink.FindStringSubmatch(text)
	if r := e.do("POST", "/api/auth/verify-email", "", map[string]string{"token": m[1]}); r.status != http.StatusBadRequest {
		t.Fatalf("spent verification token: %d, want 400", r.status)
	}
}

func TestUnknownEmailAndWrongPasswordAnswerTheSame(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.MustVerifiedUser("ana@example.com")
	wrong := e.do("POST", "/api/auth/token", "", map[string]string{"email": "ana@example.com", "password": "Wrong-Passw0rd!"})
	unknown := e.do("POST", "/api/auth/token", "", map[string]string{"email": "nobody@example.com", "password": "Wrong-Passw0rd!"})
	if wrong.status != http.StatusUnauthorized || unknown.status != http.StatusUnauthorized {
		t.Fatalf("statuses %d and %d, want 401", wrong.status, unknown.status)
	}
	if withoutRequestID(wrong.body) != withoutRequestID(unknown.body) {
		t.Fatalf("bodies differ:\n%s\n%s", wrong.body, unknown.body)
	}
	for _, path := range []string{"/api/auth/login"} {
		w := e.do("POST", path, "", map[string]string{"email": "ana@example.com", "password": "nope"})
		u := e.do("POST", path, "", map[string]string{"email": "x@example.com", "password": "nope"})
		if w.status != u.status || withoutRequestID(w.body) != withoutRequestID(u.body) {
			t.Fatalf("%s answers differ: %d %s / %d %s", path, w.status, w.body, u.status, u.body)
		}
	}
}

func TestBrowserLoginSetsHostOnlyStrictCookies(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.MustVerifiedUser("ana@example.com")
	r := e.do("POST", "/api/auth/login", "", map[string]string{"email": "ana@example.com", "password": testPassword})
	if r.status != http.StatusOK {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "token") {
		t.Fatalf("browser login puts a token in the body: %s", r.body)
	}
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 2 {
		t.Fatalf("cookies = %d, want 2", len(cookies))
	}
	var access string
	for _, c := range cookies {
		if !strings.HasPrefix(c.Name, "__Host-") || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: HttpOnly=%v Secure=%v SameSite=%v Path=%q Domain=%q", c.Name, c.HttpOnly, c.Secure, c.SameSite, c.Path, c.Domain)
		}
		if c.Name == "__Host-vitalnexa_access" {
			access = c.Value
		}
	}
	// The cookie authenticates; a cross-site state change with it is refused.
	if r := e.do("GET", "/api/me", "", nil, "Cookie", "__Host-vitalnexa_access="+access); r.status != http.StatusOK {
		t.Fatalf("me with the cookie: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/health-records", "", map[string]any{"kind": "note", "title": "x", "content": "y"},
		"Cookie", "__Host-vitalnexa_access="+access, "Sec-Fetch-Site", "cross-site")
	if r.status != http.StatusForbidden {
		t.Fatalf("cross-site POST with the cookie: %d, want 403", r.status)
	}
	for name, hdr := range map[string][]string{
		// Attack: a form on another site posts with the victim's cookie (older browsers send no Sec-Fetch-Site).
		"foreign Origin": {"Origin", "https://evil.example"},
		// Attack: a look-alike origin on another scheme.
		"own host over another scheme": {"Origin", "https://vitalnexa.test"},
		// Attack: a request that hides where it came from (Referrer-Policy tricks, a plugin,
		// an old browser) proves nothing.
		"no Origin":   {"X-Nothing", ""},
		"null Origin": {"Origin", "null"},
		// The browser says another site of the same registrable domain started it.
		"same-site, not same-origin": {"Origin", "http://vitalnexa.test", "Sec-Fetch-Site", "same-site"},
	} {
		r := e.do("POST", "/api/health-records", "", map[string]any{"kind": "note", "title": "x", "content": "y"},
			append([]string{"Cookie", "__Host-vitalnexa_access=" + access}, hdr...)...)
		if r.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, r.status)
		}
	}
	r = e.do("POST", "/api/health-records", "", map[string]any{"kind": "note", "title": "x", "content": "y"},
		"Cookie", "__Host-vitalnexa_access="+access, "Origin", "http://vitalnexa.test")
	if r.status != http.StatusCreated {
		t.Fatalf("same-origin POST with the cookie: %d %s", r.status, r.body)
	}
	// Attack: two Authorization headers, so a proxy and the server could believe different ones.
	r = e.do("GET", "/api/me", "", nil, "Authorization", "Bearer "+access)
	req, _ := http.NewRequest("GET", e.http.URL+"/api/me", nil)
	req.Header.Add("Authorization", "Bearer "+access)
	req.Header.Add("Authorization", "Bearer other")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r.status != http.StatusOK || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("one Authorization header: %d; two: %d, want 401", r.status, resp.StatusCode)
	}
}

func TestRefreshRotatesAndLogoutEndsTheSession(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	e.MustVerifiedUser("ana@example.com")
	pair := e.do("POST", "/api/auth/token", "", map[string]string{"email": "ana@example.com", "password": testPassword}).json(t)
	refresh := pair["refresh_token"].(string)
	r := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": refresh})
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	next := r.json(t)
	if next["refresh_token"] == refresh || next["access_token"] == "" {
		t.Fatalf("refresh did not rotate: %v", next)
	}
	// The same client presenting the spent token again at once (a second tab) gets the same successor.
	if r := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": refresh}); r.status != http.StatusOK ||
		r.json(t)["refresh_token"] != next["refresh_token"] {
		t.Fatalf("second tab: %d %s, want the same successor", r.status, r.body)
	}
	access := next["access_token"].(string)
	if r := e.do("POST", "/api/auth/logout", access, nil); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	// After logout the access token (still unexpired) and the refresh token are dead.
	if r := e.do("GET", "/api/me", access, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("access token after logout: %d, want 401", r.status)
	}
	if r := e.do("POST", "/api/auth/refresh", "", map[string]string{"refresh_token": next["refresh_token"].(string)}); r.status != http.StatusUnauthorized {
		t.Fatalf("refresh token after logout: %d, want 401", r.status)
	}
	// The other session of the same user is untouched.
	other := e.do("POST", "/api/auth/token", "", map[string]string{"email": "ana@example.com", "password": testPassword}).json(t)
	if r := e.do("GET", "/api/me", other["access_token"].(string), nil); r.status != http.StatusOK {
		t.Fatalf("new session: %d", r.status)
	}
}

func TestAccessTokenIsRequired(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	for name, hdr := range map[string][]string{
		"no token":                 nil,
		"garbage bearer":           {"Authorization", "Bearer not-a-jwt"},
		"basic auth is not bearer": {"Authorization", "Basic YTpi"},
		"alg none":                 {"Authorization", "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0."},
	} {
		r := e.do("GET", "/api/test-results", "", nil, hdr...)
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, r.status)
		}
	}
}

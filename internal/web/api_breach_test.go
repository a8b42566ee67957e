package web_test

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/web"
)

// fakePwned is the Have I Been Pwned range API as a real HTTP server: it knows a set of
// breached passwords and can be taken down.
type fakePwned struct {
	*httptest.Server
	breached map[string]bool // upper-case SHA-1 hex
	down     atomic.Bool
	prefixes chan string
}

func newFakePwned(t *testing.T, breached ...string) *fakePwned {
	f := &fakePwned{breached: map[string]bool{}, prefixes: make(chan string, 100)}
	for _, p := range breached {
		sum := sha1.Sum([]byte(p))
		f.breached[strings.ToUpper(hex.EncodeToString(sum[:]))] = true
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		prefix := strings.TrimPrefix(r.URL.Path, "/range/")
		f.prefixes <- prefix
		for h := range f.breached {
			if strings.HasPrefix(h, prefix) {
				fmt.Fprintf(w, "%s:42\r\n", h[5:])
			}
		}
		fmt.Fprintf(w, "%s:0\r\n", strings.Repeat("0", 35)) // padding
	}))
	t.Cleanup(f.Close)
	return f
}

func withBreachCheck(t *testing.T, f *fakePwned) envOption {
	c, err := auth.NewBreachChecker(auth.BreachOptions{BaseURL: f.URL, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return func(o *web.Options) { o.Breach = c }
}

func TestNewPasswordsAreCheckedAgainstBreaches(t *testing.T) {
	t.Parallel()
	const leaked = "Leaked-Passw0rd!"
	f := newFakePwned(t, leaked)
	e := MustEnv(t, withBreachCheck(t, f))
	cases := []struct {
		name, password string
	}{
		// Attack: a password from a public breach corpus, known to the range API.
		{"remote breach", leaked},
		// Attack: one of the most common passwords, refused even without the remote check.
		{"common password", "Password1!"},
	}
	for _, tc := range cases {
		r := e.do("POST", "/api/auth/register", "", map[string]string{"email": "a@example.com", "password": tc.password,
			"full_name": "A", "date_of_birth": "1980-01-01"})
		if r.status != http.StatusBadRequest || r.json(t)["field"] != "password" || !strings.Contains(string(r.body), "breach") {
			t.Errorf("%s: %d %s, want 400 naming the breach", tc.name, r.status, r.body)
		}
	}
	// Only a 5-character prefix of the hash left the server.
	close(f.prefixes)
	for p := range f.prefixes {
		if len(p) != 5 {
			t.Fatalf("the range API saw %q, want 5 hex characters", p)
		}
	}
	if strings.Contains(e.logs.String(), leaked) {
		t.Fatal("the log holds the password")
	}
}

func TestPasswordIsRecheckedWhenTheBreachCheckWasDown(t *testing.T) {
	t.Parallel()
	f := newFakePwned(t, testPassword)
	f.down.Store(true)
	e := MustEnv(t, withBreachCheck(t, f))
	// The remote check is down: the offline list decides, and the account owes a re-check.
	e.MustVerifiedUser("ana@example.com")
	f.down.Store(false)
	r := e.signIn("ana@example.com", testPassword)
	if r.status != http.StatusOK || r.json(t)["password_change_required"] != true {
		t.Fatalf("sign-in after the re-check: %d %s, want password_change_required", r.status, r.body)
	}
	token := r.json(t)["access_token"].(string)
	if me := e.do("GET", "/api/me", token, nil).json(t); me["password_change_required"] != true {
		t.Fatalf("me: %v", me)
	}
	if got := e.countAudit("EVENT password.found_in_breach"); got != 1 {
		t.Fatalf("%d password.found_in_breach events", got)
	}
	// Changing the password clears the flag.
	e.do("POST", "/api/me/password", token, map[string]string{"current_password": testPassword, "new_password": "Fresh-Passw0rd-2!"})
	if me := e.do("GET", "/api/me", token, nil).json(t); me["password_change_required"] != false {
		t.Fatalf("me after the change: %v", me)
	}
}

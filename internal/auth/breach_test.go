package auth

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Known answers: SHA-1("password") and SHA-1("abc") (the FIPS 180 test vector).
const (
	passwordSHA1 = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
	abcSHA1      = "A9993E364706816ABA3E25717850C26C9CD0D89D"
)

// MustBreachChecker returns a BreachChecker that is closed when the test ends.
func MustBreachChecker(tb testing.TB, opts BreachOptions) *BreachChecker {
	tb.Helper()
	c, err := NewBreachChecker(opts)
	if err != nil {
		tb.Fatalf("NewBreachChecker: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// MustWriteFile writes content to name in a fresh temporary directory and returns its path.
func MustWriteFile(tb testing.TB, name, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func TestBreachSHA1KnownAnswers(t *testing.T) {
	t.Parallel()
	for password, want := range map[string]string{"password": passwordSHA1, "abc": abcSHA1} {
		if got := sha1Hex(password); got != want {
			t.Fatalf("SHA-1(%q) = %s, want %s", password, got, want)
		}
	}
}

// rangeRequest is what the fake range API saw of one request.
type rangeRequest struct {
	method, path, rawQuery, padding, userAgent string
}

// fakeRangeAPI is an httptest.Server standing in for api.pwnedpasswords.com. It answers every
// request with status and body, after delay (or when the client gives up), and records what it
// was sent.
type fakeRangeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	seen []rangeRequest
}

func newFakeRangeAPI(tb testing.TB, status int, body string, delay time.Duration) *fakeRangeAPI {
	tb.Helper()
	f := &fakeRangeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.seen = append(f.seen, rangeRequest{
			method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery,
			padding: r.Header.Get("Add-Padding"), userAgent: r.Header.Get("User-Agent"),
		})
		f.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	tb.Cleanup(f.Close)
	return f
}

func (f *fakeRangeAPI) requests() []rangeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func TestBreachCheckerRemote(t *testing.T) {
	t.Parallel()
	const (
		suffix = "1E4C9B93F3F0682250B6CF8331B7EE68FD8" // of "password", after the prefix 5BAA6
		// Lines for other suffixes of the same prefix, real ones and padding.
		others = "003D68EB55068C33ACE09247EE4C639306B:3\r\n" +
			"012C192B2F16F82EA0EB9EF18D9D539B0DD:1\r\n" +
			"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:0\r\n"
	)
	tests := []struct {
		name   string
		status int
		body   string
		delay  time.Duration
		want   BreachResult
	}{
		{"real match", 200, others + suffix + ":52256179\r\n", 0, BreachResult{Breached: true, RemoteChecked: true}},
		{"match first, LF line ends, lower case", 200, strings.ToLower(suffix) + ":3\n" + strings.ReplaceAll(others, "\r", ""), 0, BreachResult{Breached: true, RemoteChecked: true}},
		{"match without final line end", 200, others + suffix + ":1", 0, BreachResult{Breached: true, RemoteChecked: true}},
		// Padding spoof: a count-0 line with the very suffix must not count as a breach.
		{"padding line with the matching suffix", 200, others + suffix + ":0\r\n", 0, BreachResult{RemoteChecked: true}},
		{"padding line 000 with the matching suffix", 200, others + suffix + ":000\r\n", 0, BreachResult{RemoteChecked: true}},
		{"no match", 200, others, 0, BreachResult{RemoteChecked: true}},
		// Remote down: the offline verdict, flagged for a re-check.
		{"status 500", 500, "oops", 0, BreachResult{RemoteDown: true}},
		{"status 429 rate limited", 429, "", 0, BreachResult{RemoteDown: true}},
		// Slow remote (tarpit): Timeout must bound the wait.
		{"timeout", 200, others + suffix + ":5\r\n", 2 * time.Second, BreachResult{RemoteDown: true}},
		// Captive portal or proxy page answering 200: not a "not breached".
		{"malformed: HTML", 200, "<html><body>Sign in to the Wi-Fi</body></html>", 0, BreachResult{RemoteDown: true}},
		{"malformed: empty body", 200, "", 0, BreachResult{RemoteDown: true}},
		{"malformed: short suffix", 200, suffix[1:] + ":5\r\n", 0, BreachResult{RemoteDown: true}},
		{"malformed: count not a number", 200, others + suffix + ":many\r\n", 0, BreachResult{RemoteDown: true}},
		{"malformed: missing count", 200, others + suffix + "\r\n", 0, BreachResult{RemoteDown: true}},
		{"malformed: garbage after a match", 200, suffix + ":5\r\n<html>", 0, BreachResult{RemoteDown: true}},
		// Endless or huge answer: read at most maxRangeBody.
		{"oversized body", 200, strings.Repeat(others, maxRangeBody/len(others)+1), 0, BreachResult{RemoteDown: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeRangeAPI(t, tt.status, tt.body, tt.delay)
			c := MustBreachChecker(t, BreachOptions{BaseURL: api.URL, Timeout: 100 * time.Millisecond})
			c.common = nil // "password" is on the built-in list; this test is about the remote

			start := time.Now()
			got, err := c.Check(context.Background(), "password")
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Check = %+v, want %+v", got, tt.want)
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Fatalf("Check took %v, want it bounded by Timeout", elapsed)
			}
			reqs := api.requests()
			if got, want := len(reqs), 1; got != want {
				t.Fatalf("%d requests, want %d", got, want)
			}
			r := reqs[0]
			// k-anonymity: the 5-character prefix and nothing else of the hash leaves the server.
			if got, want := r.path, "/range/"+passwordSHA1[:5]; got != want {
				t.Fatalf("path = %q, want %q", got, want)
			}
			if r.rawQuery != "" || r.method != http.MethodGet {
				t.Fatalf("request = %s ?%s, want GET without a query", r.method, r.rawQuery)
			}
			if got, want := r.padding, "true"; got != want {
				t.Fatalf("Add-Padding = %q, want %q", got, want)
			}
			if !strings.Contains(r.userAgent, "VitalNexa") {
				t.Fatalf("User-Agent = %q, want one naming VitalNexa", r.userAgent)
			}
		})
	}
}

func TestBreachCheckerRemoteAbc(t *testing.T) {
	t.Parallel()
	// "abc" is on no offline list: the answer comes from the remote alone.
	api := newFakeRangeAPI(t, 200, abcSHA1[5:]+":7\r\n", 0)
	c := MustBreachChecker(t, BreachOptions{BaseURL: api.URL + "/hibp/"})
	got, err := c.Check(context.Background(), "abc")
	if err != nil {
		t.Fatal(err)
	}
	if want := (BreachResult{Breached: true, RemoteChecked: true}); got != want {
		t.Fatalf("Check = %+v, want %+v", got, want)
	}
	// A BaseURL with a path (a proxy mount point) keeps it.
	if got, want := api.requests()[0].path, "/hibp/range/A9993"; got != want {
		t.Fatalf("path = %q, want %q", got, want)
	}
}

func TestBreachCheckerRemoteUnreachable(t *testing.T) {
	t.Parallel()
	api := newFakeRangeAPI(t, 200, "", 0)
	url := api.URL
	api.Close() // connection refused from now on
	c := MustBreachChecker(t, BreachOptions{BaseURL: url})
	got, err := c.Check(context.Background(), "correct horse battery staple")
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if want := (BreachResult{RemoteDown: true}); got != want {
		t.Fatalf("Check = %+v, want %+v", got, want)
	}
}

func TestBreachCheckerRemoteCallerGone(t *testing.T) {
	t.Parallel()
	api := newFakeRangeAPI(t, 200, abcSHA1[5:]+":7\r\n", 0)
	c := MustBreachChecker(t, BreachOptions{BaseURL: api.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A cancelled request is the caller's doing, not a remote outage to paper over.
	if _, err := c.Check(ctx, "abc"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Check error = %v, want context.Canceled", err)
	}
}

func TestBreachCheckerOfflineBuiltin(t *testing.T) {
	t.Parallel()
	if got, min := len(commonPasswords()), 500; got < min {
		t.Fatalf("built-in list has %d passwords, want at least %d", got, min)
	}
	// Any request fails the test: built-in hits must not need the network.
	var hits atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
	}))
	t.Cleanup(api.Close)
	remote := MustBreachChecker(t, BreachOptions{BaseURL: api.URL})
	offline := MustBreachChecker(t, BreachOptions{Disabled: true})

	breached := BreachResult{Breached: true}
	tests := []struct {
		name     string
		c        *BreachChecker
		password string
		want     BreachResult
	}{
		{"top of every list", remote, "123456", breached},
		{"password", remote, "password", breached},
		{"iloveyou", remote, "iloveyou", breached},
		// Composition-rule dressing of a common password is still common.
		{"Password1!", remote, "Password1!", breached},
		{"P@ssw0rd", remote, "P@ssw0rd", breached},
		{"P@ssword1", remote, "P@ssword1", breached},
		{"Welcome1!", remote, "Welcome1!", breached},
		{"Qwerty123!", remote, "Qwerty123!", breached},
		{"Summer2024!", remote, "Summer2024!", breached},
		{"Passw0rd!", remote, "Passw0rd!", breached},
		{"Admin@123", remote, "Admin@123", breached},
		// Case games: upper-casing or inverting the case does not make a new password.
		{"PASSWORD", remote, "PASSWORD", breached},
		{"pASSWORD1!", remote, "pASSWORD1!", breached},
		{"p@SSW0RD", remote, "p@SSW0RD", breached},
		{"sUMMER2024!", remote, "sUMMER2024!", breached},
		{"ILOVEYOU", remote, "ILOVEYOU", breached},
		{"disabled remote: hit", offline, "qwerty", breached},
		{"disabled remote: miss is not remote-checked", offline, "correct horse battery staple", BreachResult{}},
		{"near miss is not a hit", offline, "Password1!x", BreachResult{}},
		{"surrounding spaces are part of the password", offline, " password ", BreachResult{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.c.Check(context.Background(), tt.password)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Check(%q) = %+v, want %+v", tt.password, got, tt.want)
			}
		})
	}
	t.Cleanup(func() {
		if n := hits.Load(); n != 0 {
			t.Errorf("built-in hits made %d remote requests, want 0", n)
		}
	})
}

// hashFile is a generated operator file: sorted lines for the passwords "pw-<i>", except the
// lowest and highest hashes, which are left out so that there are misses on both sides.
type hashFile struct {
	content      string
	in           []string // passwords in the file with a count > 0, in file order
	zero         []string // passwords in the file with count 0
	below, above string   // passwords whose hashes sort before the first and after the last line
}

func makeHashFile(n int, crlf, counts, finalNewline bool) hashFile {
	type entry struct{ hash, password string }
	entries := make([]entry, n+2)
	for i := range entries {
		pw := fmt.Sprintf("pw-%d", i)
		entries[i] = entry{sha1Hex(pw), pw}
	}
	entries = append(entries, entry{passwordSHA1, "password"})
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.hash, b.hash) })
	f := hashFile{below: entries[0].password, above: entries[len(entries)-1].password}
	entries = entries[1 : len(entries)-1]

	eol := "\n"
	if crlf {
		eol = "\r\n"
	}
	var b strings.Builder
	for i, e := range entries {
		hash := e.hash
		if i%3 == 1 {
			hash = strings.ToLower(hash) // case-insensitive hex
		}
		b.WriteString(hash)
		switch {
		case counts && i%10 == 5 && e.password != "password":
			b.WriteString(":0")
			f.zero = append(f.zero, e.password)
		case counts:
			fmt.Fprintf(&b, ":%d", 1+i%100000)
			f.in = append(f.in, e.password)
		default:
			f.in = append(f.in, e.password)
		}
		if finalNewline || i < len(entries)-1 {
			b.WriteString(eol)
		}
	}
	f.content = b.String()
	return f
}

func TestBreachCheckerOfflineFile(t *testing.T) {
	t.Parallel()
	small := makeHashFile(200, true, true, true)
	if len(small.content) >= offlineMapLimit {
		t.Fatal("small file is not small")
	}
	tests := []struct {
		name  string
		file  hashFile
		large bool // exercises the on-disk binary search
	}{
		{"small, CRLF, counts", small, false},
		{"small, LF, no counts, no final newline", makeHashFile(200, false, false, false), false},
		{"large, CRLF, counts (HIBP format)", makeHashFile(26000, true, true, true), true},
		{"large, LF, no counts, no final newline", makeHashFile(30000, false, false, false), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := len(tt.file.content) >= offlineMapLimit; got != tt.large {
				t.Fatalf("file of %d bytes: large = %v, want %v", len(tt.file.content), got, tt.large)
			}
			path := MustWriteFile(t, "pwned.txt", tt.file.content)
			c := MustBreachChecker(t, BreachOptions{OfflineFile: path, Disabled: true})
			c.common = nil // "password" is on the built-in list; this test is about the file
			if got := c.file != nil; got != tt.large {
				t.Fatalf("searched on disk = %v, want %v", got, tt.large)
			}

			check := func(password string, want bool) {
				t.Helper()
				got, err := c.Check(context.Background(), password)
				if err != nil {
					t.Fatalf("Check(%q): %v", password, err)
				}
				if got.Breached != want || got.RemoteChecked {
					t.Fatalf("Check(%q) = %+v, want Breached %v", password, got, want)
				}
			}
			check("password", true) // the known answer, 5BAA61E4…
			check(tt.file.in[0], true)
			check(tt.file.in[len(tt.file.in)-1], true)
			for _, pw := range tt.file.in {
				check(pw, true)
			}
			for _, pw := range tt.file.zero {
				check(pw, false) // count 0 is not a breach
			}
			check(tt.file.below, false)
			check(tt.file.above, false)
			check("pw-not-there", false)
		})
	}
}

func TestBreachCheckerOfflineFileCorruptedLater(t *testing.T) {
	t.Parallel()
	hf := makeHashFile(30000, true, true, true)
	path := MustWriteFile(t, "pwned.txt", hf.content)
	c := MustBreachChecker(t, BreachOptions{OfflineFile: path, Disabled: true})
	// Overwrite the middle, where every search starts, after start-up checks passed.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("x", 4096)), int64(len(hf.content)/2-2048)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	const password = "correct horse battery staple"
	_, err = c.Check(context.Background(), password)
	if err == nil {
		t.Fatal("Check on a corrupted file: no error")
	}
	// Leak: errors must not carry the password or any form of its hash.
	h := sha1Hex(password)
	for _, secret := range []string{password, h, strings.ToLower(h), h[5:], strings.ToLower(h[5:])} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error %q contains %q", err, secret)
		}
	}
}

func TestNewBreachChecker(t *testing.T) {
	t.Parallel()
	large := makeHashFile(30000, false, true, true)
	lines := strings.SplitAfter(large.content, "\n")
	reversed := slices.Clone(lines[:len(lines)-1])
	slices.Reverse(reversed)

	tests := []struct {
		name    string
		opts    BreachOptions
		content string // written to a temporary OfflineFile when not ""
		wantErr bool
	}{
		{"defaults", BreachOptions{}, "", false},
		{"http for a local mirror", BreachOptions{BaseURL: "http://127.0.0.1:8080"}, "", false},
		{"small operator file", BreachOptions{}, passwordSHA1 + ":3\n", false},
		{"small file: blank lines skipped", BreachOptions{}, "\n" + passwordSHA1 + "\r\n\r\n", false},
		{"large operator file", BreachOptions{}, large.content, false},
		// SSRF/exfiltration: the prefix goes only to an http(s) server.
		{"ftp scheme", BreachOptions{BaseURL: "ftp://example.com"}, "", true},
		{"file scheme", BreachOptions{BaseURL: "file:///etc/passwd"}, "", true},
		{"no scheme", BreachOptions{BaseURL: "api.pwnedpasswords.com"}, "", true},
		{"no host", BreachOptions{BaseURL: "https://"}, "", true},
		{"query", BreachOptions{BaseURL: "https://example.com/?x=1"}, "", true},
		// Credentials in the URL would be sent, and could land in an error message.
		{"credentials", BreachOptions{BaseURL: "https://user:s3cret@example.com"}, "", true},
		{"negative timeout", BreachOptions{Timeout: -time.Second}, "", true},
		{"missing file", BreachOptions{OfflineFile: filepath.Join(t.TempDir(), "missing.txt")}, "", true},
		{"directory", BreachOptions{OfflineFile: t.TempDir()}, "", true},
		// A truncated download must not silently disable the list.
		{"empty file", BreachOptions{}, "\n", true},
		{"NTLM hashes (32 hex)", BreachOptions{}, "8846F7EAEE8FB117AD06BDD830B7586C:1\n", true},
		{"not hex", BreachOptions{}, strings.Repeat("Z", 40) + ":1\n", true},
		{"count not a number", BreachOptions{}, passwordSHA1 + ":x\n", true},
		{"empty count", BreachOptions{}, passwordSHA1 + ":\n", true},
		{"plaintext passwords", BreachOptions{}, "hunter2\n", true},
		// HIBP's file ordered by prevalence cannot be binary-searched.
		{"large file not sorted", BreachOptions{}, strings.Join(reversed, ""), true},
		{"large file with a garbage first line", BreachOptions{}, strings.Repeat("#", 100) + "\n" + large.content, true},
		{"large file of newlines", BreachOptions{}, strings.Repeat("\n", offlineMapLimit), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := tt.opts
			if tt.content != "" {
				opts.OfflineFile = MustWriteFile(t, "pwned.txt", tt.content)
			}
			c, err := NewBreachChecker(opts)
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("NewBreachChecker error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				for _, secret := range []string{"s3cret", "hunter2", passwordSHA1} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error %q quotes %q", err, secret)
					}
				}
				return
			}
			defer c.Close()
			if opts.BaseURL == "" {
				if got, want := c.rangeURL, DefaultBreachBaseURL+"/range/"; got != want {
					t.Fatalf("range URL = %q, want %q", got, want)
				}
			}
			if opts.Timeout == 0 {
				if got, want := c.timeout, DefaultBreachTimeout; got != want {
					t.Fatalf("timeout = %v, want %v", got, want)
				}
			}
		})
	}
}

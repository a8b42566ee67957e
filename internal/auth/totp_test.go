package auth

import (
	"bytes"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// rfcSeed is the SHA-1 seed of RFC 4226 Appendix D and RFC 6238 Appendix B.
var rfcSeed = []byte("12345678901234567890")

func TestHOTPRFC4226(t *testing.T) {
	t.Parallel()
	// RFC 4226 Appendix D, counters 0 to 9.
	want := []string{"755224", "287082", "359152", "969429", "338314",
		"254676", "287922", "162583", "399871", "520489"}
	for counter, code := range want {
		if got := hotp(rfcSeed, uint64(counter), 6); got != code {
			t.Fatalf("hotp(counter %d) = %s, want %s", counter, got, code)
		}
	}
}

func TestTOTPRFC6238(t *testing.T) {
	t.Parallel()
	// RFC 6238 Appendix B, SHA-1 rows: 8-digit codes. The 6-digit code of the same step is
	// their last six digits, since both are the same 31-bit number modulo a power of ten.
	tests := []struct {
		unix  int64
		code8 string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	}
	for _, tt := range tests {
		t.Run(tt.code8, func(t *testing.T) {
			t.Parallel()
			step := tt.unix / 30
			if got, want := hotp(rfcSeed, uint64(step), 8), tt.code8; got != want {
				t.Fatalf("8-digit TOTP at %d = %s, want %s", tt.unix, got, want)
			}
			got, ok := VerifyTOTP(rfcSeed, tt.code8[2:], time.Unix(tt.unix, 0), 0)
			if !ok {
				t.Fatalf("VerifyTOTP(%s at %d) refused the RFC code", tt.code8[2:], tt.unix)
			}
			if want := step; got != want {
				t.Fatalf("VerifyTOTP step = %d, want %d", got, want)
			}
			// The RFC's 8-digit form is not what the authenticator shows: refused.
			if _, ok := VerifyTOTP(rfcSeed, tt.code8, time.Unix(tt.unix, 0), 0); ok {
				t.Fatalf("VerifyTOTP accepted the 8-digit code")
			}
		})
	}
}

func TestVerifyTOTP(t *testing.T) {
	t.Parallel()
	now := time.Unix(1111111111, 0) // step 37037037, code "050471" (RFC 6238)
	cur := now.Unix() / 30
	at := func(step int64) string { return hotp(rfcSeed, uint64(step), 6) }
	code := at(cur)
	if code != "050471" {
		t.Fatalf("current code = %s, want the RFC's 050471", code)
	}
	wrong := "999999"
	for s := cur - 1; s <= cur+1; s++ {
		if at(s) == wrong {
			t.Fatalf("test setup: %s is a valid code in the window", wrong)
		}
	}
	arabic := strings.Map(func(r rune) rune { return r - '0' + '٠' }, code)
	fullWidth := strings.Map(func(r rune) rune { return r - '0' + '０' }, code)

	tests := []struct {
		name     string
		secret   []byte
		code     string
		lastStep int64
		wantStep int64 // 0 when refused
	}{
		{"current step", rfcSeed, code, 0, cur},
		{"previous step (clock behind)", rfcSeed, at(cur - 1), 0, cur - 1},
		{"next step (clock ahead)", rfcSeed, at(cur + 1), 0, cur + 1},
		{"next step after the current one was used", rfcSeed, at(cur + 1), cur, cur + 1},
		{"previous step, last use long ago", rfcSeed, at(cur - 1), cur - 5, cur - 1},
		// A code from over a minute ago (shoulder-surfed, phished) is stale.
		{"two steps behind", rfcSeed, at(cur - 2), 0, 0},
		// A code from the future beyond the skew window: a stolen, pre-computed code.
		{"two steps ahead", rfcSeed, at(cur + 2), 0, 0},
		{"wrong code", rfcSeed, wrong, 0, 0},
		// Replay: the same code sent twice (an observed or intercepted code).
		{"replay of the current step", rfcSeed, code, cur, 0},
		// Replay of an older code after a newer one was accepted.
		{"step before the last used one", rfcSeed, at(cur - 1), cur, 0},
		{"previous step equal to the last used one", rfcSeed, at(cur - 1), cur - 1, 0},
		// A server clock set back must not reopen codes already spent.
		{"last used step ahead of the window", rfcSeed, at(cur + 1), cur + 5, 0},
		// Integer parsing would drop the leading zero and accept this.
		{"five digits (leading zero dropped)", rfcSeed, strings.TrimPrefix(code, "0"), 0, 0},
		{"seven digits (extra trailing digit)", rfcSeed, code + "0", 0, 0},
		{"seven digits (extra leading zero)", rfcSeed, "0" + code, 0, 0},
		{"empty", rfcSeed, "", 0, 0},
		{"letters", rfcSeed, "abcdef", 0, 0},
		{"letter in place of a digit", rfcSeed, code[:5] + "a", 0, 0},
		// unicode.IsDigit accepts these; a normalizing parser would map them onto the code.
		{"Arabic-Indic digits", rfcSeed, arabic, 0, 0},
		{"full-width digits", rfcSeed, fullWidth, 0, 0},
		{"leading space", rfcSeed, " " + code, 0, 0},
		{"trailing space", rfcSeed, code + " ", 0, 0},
		{"space inside", rfcSeed, code[:3] + " " + code[3:], 0, 0},
		{"trailing newline", rfcSeed, code + "\n", 0, 0},
		// strconv.Atoi accepts a sign: "+50471" is six bytes and the number 50471.
		{"plus sign", rfcSeed, "+" + code[1:], 0, 0},
		{"NUL byte", rfcSeed, code[:5] + "\x00", 0, 0},
		// Under this secret steps cur and cur+1 share code 470564 (found by search): the
		// later step must be the one spent, or the code would pass again in the next step.
		{"code shared by two steps", []byte("collision-seed-00445773"), "470564", 0, cur + 1},
		{"code shared by two steps, replayed", []byte("collision-seed-00445773"), "470564", cur + 1, 0},
		// An account whose secret was lost or never set must not accept codes made with an
		// empty key, which anyone can compute.
		{"empty secret", nil, hotp(nil, uint64(cur), 6), 0, 0},
		// Secrets under 128 bits (RFC 4226 R6) are guessable offline from one code.
		{"80-bit secret", rfcSeed[:10], hotp(rfcSeed[:10], uint64(cur), 6), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			step, ok := VerifyTOTP(tt.secret, tt.code, now, tt.lastStep)
			if got, want := ok, tt.wantStep != 0; got != want {
				t.Fatalf("VerifyTOTP(%q) ok = %v, want %v", tt.code, got, want)
			}
			if got, want := step, tt.wantStep; got != want {
				t.Fatalf("VerifyTOTP(%q) step = %d, want %d", tt.code, got, want)
			}
		})
	}
}

func TestVerifyTOTPBeforeEpoch(t *testing.T) {
	t.Parallel()
	// A broken clock at 1969 must not turn into counter 0 or a huge unsigned counter.
	now := time.Unix(-10, 0)
	for _, code := range []string{hotp(rfcSeed, 0, 6), hotp(rfcSeed, ^uint64(0), 6)} {
		if _, ok := VerifyTOTP(rfcSeed, code, now, -100); ok {
			t.Fatalf("VerifyTOTP before 1970 accepted %s", code)
		}
	}
}

func TestNewTOTPSecret(t *testing.T) {
	t.Parallel()
	a, err := NewTOTPSecret()
	if err != nil {
		t.Fatalf("NewTOTPSecret: %v", err)
	}
	b, err := NewTOTPSecret()
	if err != nil {
		t.Fatalf("NewTOTPSecret: %v", err)
	}
	if got, want := len(a), 20; got != want {
		t.Fatalf("secret is %d bytes, want %d", got, want)
	}
	if bytes.Equal(a, b) {
		t.Fatalf("two secrets are equal")
	}
}

func TestTOTPURL(t *testing.T) {
	t.Parallel()
	secret, err := NewTOTPSecret()
	if err != nil {
		t.Fatalf("NewTOTPSecret: %v", err)
	}
	tests := []struct {
		name    string
		issuer  string
		account string
	}{
		{"plain", "VitalNexa", "0b7c6f0e-3c1a-4c59-9a43-2f4f1c1a9d10"},
		{"email account", "VitalNexa", "alice+mfa@example.com"},
		// "&" or "=" in the issuer must not inject a query parameter (say, a weaker algorithm).
		{"issuer with space, & and =", "Vital Nexa & Co=x", "alice"},
		// A colon in either part would move the issuer/account boundary of the label.
		{"colons in issuer and account", "Vital:Nexa", "al:ice"},
		{"non-ASCII", "VitalNexa Zürich", "Ærøskøbing"},
		{"path and query characters", "A/B?C#D", "e/f?g#h%"},
		{"no issuer", "", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := TOTPURL(secret, tt.issuer, tt.account)
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("url.Parse(%q): %v", raw, err)
			}
			if got, want := u.Scheme+"://"+u.Host, "otpauth://totp"; got != want {
				t.Fatalf("URL starts %q, want %q", got, want)
			}
			escaped := strings.TrimPrefix(u.EscapedPath(), "/")
			wantLabel := tt.account
			var issuerPart, accountPart string
			if tt.issuer != "" {
				wantLabel = tt.issuer + ":" + tt.account
				var ok bool
				issuerPart, accountPart, ok = strings.Cut(escaped, ":")
				if !ok {
					t.Fatalf("label %q has no issuer prefix", escaped)
				}
			} else {
				accountPart = escaped
			}
			if got, want := u.Path, "/"+wantLabel; got != want {
				t.Fatalf("label = %q, want %q", got, want)
			}
			if got, err := url.PathUnescape(issuerPart); err != nil || got != tt.issuer {
				t.Fatalf("label issuer = %q (%v), want %q", got, err, tt.issuer)
			}
			if got, err := url.PathUnescape(accountPart); err != nil || got != tt.account {
				t.Fatalf("label account = %q (%v), want %q", got, err, tt.account)
			}

			q := u.Query()
			for key, want := range map[string]string{
				"issuer": tt.issuer, "algorithm": "SHA1", "digits": "6", "period": "30",
			} {
				if got := q[key]; want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
					t.Fatalf("query %s = %q, want [%q]", key, got, want)
				}
			}
			wantParams := 5
			if tt.issuer == "" {
				wantParams = 4
			}
			if got, want := len(q), wantParams; got != want {
				t.Fatalf("query has %d parameters, want %d: %q", got, want, u.RawQuery)
			}
			enc := q.Get("secret")
			if strings.Contains(enc, "=") {
				t.Fatalf("secret %q is padded", enc)
			}
			if !regexp.MustCompile(`^[A-Z2-7]+$`).MatchString(enc) {
				t.Fatalf("secret %q is not upper-case base32", enc)
			}
			got, err := totpSecretEncoding.DecodeString(enc)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("secret does not round-trip: %v", err)
			}
			// Several apps show a "+" in the issuer literally.
			if strings.Contains(tt.issuer, " ") && strings.Contains(u.RawQuery, "+") {
				t.Fatalf("query %q writes a space as +", u.RawQuery)
			}
		})
	}
}

var recoveryCodeForm = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$`)

func TestNewRecoveryCodes(t *testing.T) {
	t.Parallel()
	const n = 100
	codes, err := NewRecoveryCodes(n)
	if err != nil {
		t.Fatalf("NewRecoveryCodes: %v", err)
	}
	if got, want := len(codes), n; got != want {
		t.Fatalf("got %d codes, want %d", got, want)
	}
	seen := map[string]bool{}
	used := map[rune]bool{}
	for _, c := range codes {
		if !recoveryCodeForm.MatchString(c) {
			t.Fatalf("code %q is not xxxx-xxxx-xxxx-xxxx in the recovery alphabet", c)
		}
		norm := NormalizeRecoveryCode(c)
		if got, want := norm, strings.ReplaceAll(c, "-", ""); got != want {
			t.Fatalf("NormalizeRecoveryCode(%q) = %q, want %q", c, got, want)
		}
		if seen[norm] {
			t.Fatalf("code %q issued twice", c)
		}
		seen[norm] = true
		for _, r := range norm {
			used[r] = true
		}
	}
	// 1,600 random characters miss one of 32 with probability about 2^-67: a missing one
	// means the code carries less entropy than 5 bits a character.
	if got, want := len(used), 32; got != want {
		t.Fatalf("codes use %d distinct characters, want %d", got, want)
	}
	again, err := NewRecoveryCodes(1)
	if err != nil {
		t.Fatalf("NewRecoveryCodes: %v", err)
	}
	if seen[NormalizeRecoveryCode(again[0])] {
		t.Fatalf("a second call repeated a code")
	}
	for _, bad := range []int{0, -1, 101} {
		if _, err := NewRecoveryCodes(bad); err == nil {
			t.Fatalf("NewRecoveryCodes(%d) error = nil, want an error", bad)
		}
	}
}

func TestNormalizeRecoveryCode(t *testing.T) {
	t.Parallel()
	const issued = "7kq2-mz9d-x4hc-0t1e"
	canonical := NormalizeRecoveryCode(issued)
	if got, want := canonical, "7kq2mz9dx4hc0t1e"; got != want {
		t.Fatalf("NormalizeRecoveryCode(issued) = %q, want %q", got, want)
	}
	tests := []struct {
		name  string
		typed string
		match bool
	}{
		{"as issued", issued, true},
		{"upper case", "7KQ2-MZ9D-X4HC-0T1E", true},
		{"mixed case", "7Kq2-mZ9d-X4hc-0T1e", true},
		{"no dashes", "7kq2mz9dx4hc0t1e", true},
		{"spaces instead of dashes", "7kq2 mz9d x4hc 0t1e", true},
		{"extra spaces and a tab", "  7kq2\tmz9d - x4hc-0t1e ", true},
		{"letter o for zero", "7kq2-mz9d-x4hc-ot1e", true},
		{"letter l for one", "7kq2-mz9d-x4hc-0tle", true},
		{"capital I for one", "7kq2-mz9d-x4hc-0TIE", true},
		{"one character wrong", "7kq2-mz9d-x4hc-0t1f", false},
		{"one character missing", "7kq2-mz9d-x4hc-0t1", false},
		{"empty", "", false},
		// A Unicode look-alike (KELVIN SIGN) must not case-fold into the code's "k".
		{"Kelvin sign for k", "7\u212aq2-mz9d-x4hc-0t1e", false},
		// Full-width digits are not the code's digits.
		{"full-width 7", "\uff17kq2-mz9d-x4hc-0t1e", false},
		// A Unicode dash is not a separator: only what the code shows is dropped.
		{"en dash", "7kq2\u2013mz9d-x4hc-0t1e", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := NormalizeRecoveryCode(tt.typed)
			if match := got == canonical; match != tt.match {
				t.Fatalf("NormalizeRecoveryCode(%q) = %q; matches %q: %v, want %v", tt.typed, got, canonical, match, tt.match)
			}
			if match := bytes.Equal(HashToken(got), HashToken(canonical)); match != tt.match {
				t.Fatalf("stored hash matches: %v, want %v", match, tt.match)
			}
			if again := NormalizeRecoveryCode(got); again != got {
				t.Fatalf("NormalizeRecoveryCode is not idempotent: %q then %q", got, again)
			}
		})
	}
}

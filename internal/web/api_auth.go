package web

import (
	"context"
	"crypto/sha256"
	"errors"
	"math"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

const (
	accessCookie      = "__Host-vitalnexa_access"
	refreshCookie     = "__Host-vitalnexa_refresh"
	maxEmailLength    = 254
	maxFullNameLength = 200
)

var (
	// One answer for an unknown email, a wrong password, a locked and a disabled account.
	errBadCredentials = phr.Errorf(phr.EUNAUTHORIZED, "The email or password is not correct.")
	errMFARequired    = &phr.Error{Code: codeMFARequired, Message: "Enter the code from your authenticator app or a recovery code."}
	errBadOTP         = phr.FieldErrorf(phr.EUNAUTHORIZED, "otp", "The code is not correct.")
	errBadLink        = phr.FieldErrorf(phr.EINVALID, "token", "The link is invalid or has expired.")
	errBreached       = phr.FieldErrorf(phr.EINVALID, "password",
		"This password has appeared in a data breach. Choose another one.")
)

// authenticate finds the access token (Authorization: Bearer, else the access cookie),
// checks it and its session, and returns r with the user in its context.
func (s *Server) authenticate(r *http.Request) (*http.Request, error) {
	token, fromCookie := "", false
	if len(r.Header.Values("Authorization")) > 1 {
		// Two credentials: a proxy and the server could each believe a different one.
		return r, phr.Errorf(phr.EUNAUTHORIZED, "invalid or expired token")
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, t, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return r, phr.Errorf(phr.EUNAUTHORIZED, "invalid or expired token")
		}
		token = strings.TrimSpace(t)
	} else if c, err := r.Cookie(accessCookie); err == nil {
		token, fromCookie = c.Value, true
	}
	if token == "" {
		return r, phr.Errorf(phr.EUNAUTHORIZED, "Authentication is required.")
	}
	// A cookie rides along on any request the browser makes; a change made with it must
	// show it came from the service's own pages (SameSite=Strict is the first line, this
	// the second).
	if fromCookie && r.Method != http.MethodGet && r.Method != http.MethodHead && !s.ownOrigin(r) {
		return r, errCrossSite
	}
	claims, err := s.opts.Tokens.Parse(token)
	if err != nil {
		return r, err
	}
	ctx := phr.NewContextWithUserID(r.Context(), claims.UserID)
	sess, err := s.opts.Sessions.CheckSession(ctx, claims.SessionID)
	if err != nil {
		return r, err
	}
	infoFrom(ctx).userID = claims.UserID
	ctx = context.WithValue(ctx, sessionKey{}, sess)
	return r.WithContext(ctx), nil
}

// errCrossSite refuses a cookie-authenticated change that does not show it came from the
// service's own pages.
var errCrossSite = phr.Errorf(phr.EFORBIDDEN, "Cross-site requests are not allowed: a request made with the session cookie must carry the service's own Origin.")

// ownOrigin reports whether the browser says the service's own pages started the request:
// an Origin that is the service's (every browser sends one with a POST, PUT, PATCH or
// DELETE, same-origin included) and no Sec-Fetch-Site that says otherwise. A request
// without an Origin is not taken for the service's own.
func (s *Server) ownOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	own, err := url.Parse(s.opts.PublicURL)
	if err != nil {
		return false
	}
	origin := r.Header.Values("Origin")
	return len(origin) == 1 && strings.EqualFold(origin[0], own.Scheme+"://"+own.Host)
}

type sessionKey struct{}

// sessionFrom is the session of an authenticated request.
func sessionFrom(ctx context.Context) *phr.Session {
	s, _ := ctx.Value(sessionKey{}).(*phr.Session)
	if s == nil {
		return &phr.Session{}
	}
	return s
}

// limit counts a hit against key; ETOOMANY (with Retry-After) past the limit.
func (s *Server) limit(ctx context.Context, key string, l RateLimit) error {
	if s.opts.RateLimiter == nil {
		return nil
	}
	if retry, ok := s.blocked.until(key, s.now()); ok {
		return &retryError{phr.Errorf(phr.ETOOMANY, "Too many requests. Try again later."), retry}
	}
	ok, retry, err := s.opts.RateLimiter.Allow(ctx, key, l.N, l.Window)
	if err != nil {
		return err
	}
	if !ok {
		if strings.HasPrefix(key, "ip:") {
			s.blocked.add(key, s.now(), s.now().Add(retry))
		}
		return &retryError{phr.Errorf(phr.ETOOMANY, "Too many requests. Try again later."), retry}
	}
	return nil
}

// blockList remembers, in this process, client addresses that are over their limit until
// their window ends, so that a flood from one address is refused without a database write
// per request. Only addresses: an account's count can be reset (an unlock link) in another
// process, which this one would not see.
type blockList struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// maxBlocked bounds the list; past it, entries whose window has ended are dropped, and if
// none has, new ones are not remembered (the database still refuses them).
const maxBlocked = 100000

func (b *blockList) until(key string, now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.m[key]
	if !ok || !now.Before(t) {
		return 0, false
	}
	return t.Sub(now), true
}

func (b *blockList) add(key string, now, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]time.Time{}
	}
	if len(b.m) >= maxBlocked {
		for k, t := range b.m {
			if !now.Before(t) {
				delete(b.m, k)
			}
		}
		if len(b.m) >= maxBlocked {
			return
		}
	}
	b.m[key] = until
}

// accountKey names one flow of an account for rate limits by its normalised email, so that
// case and Unicode variants of one address share a count. Each flow counts apart, so that
// requests for resets (which anyone may send) cannot use up the owner's sign-ins.
func accountKey(flow, email string) string {
	return flow + ":" + keyring.NormalizeEmail(email)
}

type registerRequest struct {
	Email       string `json:"email"`
	Password    string `json:"password"`
	FullName    string `json:"full_name"`
	DateOfBirth string `json:"date_of_birth"`
}

func checkEmail(email string) error {
	if err := phr.CheckText("email", email, maxEmailLength, false); err != nil {
		return err
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != strings.TrimSpace(email) || a.Name != "" {
		return phr.FieldErrorf(phr.EINVALID, "email", "is not an email address")
	}
	return nil
}

func (s *Server) checkRegistration(req *registerRequest) error {
	if err := checkEmail(req.Email); err != nil {
		return err
	}
	if err := s.opts.Passwords.Check(req.Password); err != nil {
		return err
	}
	var err error
	if req.FullName, err = checkFullName(req.FullName); err != nil {
		return err
	}
	return s.checkDateOfBirth(req.DateOfBirth)
}

// checkFullName returns the name trimmed, or EINVALID; for registration and corrections.
func checkFullName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", phr.FieldErrorf(phr.EINVALID, "full_name", "is required")
	}
	if err := phr.CheckText("full_name", name, maxFullNameLength, false); err != nil {
		return "", err
	}
	return name, nil
}

// checkDateOfBirth accepts a past date (YYYY-MM-DD) from 1880 on; for registration and corrections.
func (s *Server) checkDateOfBirth(date string) error {
	dob, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return phr.FieldErrorf(phr.EINVALID, "date_of_birth", "must be a date (YYYY-MM-DD)")
	}
	if dob.After(s.now()) || dob.Year() < 1880 {
		return phr.FieldErrorf(phr.EINVALID, "date_of_birth", "must be a past date")
	}
	return nil
}

// checkNewPassword applies the policy and the breach check to a new password. recheck is
// true when the remote breach source could not be asked: the account is then re-checked at
// its next sign-in.
func (s *Server) checkNewPassword(ctx context.Context, field, password string) (recheck bool, err error) {
	if err := s.opts.Passwords.Check(password); err != nil {
		if field != "password" {
			err = phr.FieldErrorf(phr.EINVALID, field, "%s", phr.ErrorMessage(err))
		}
		return false, err
	}
	if s.opts.Breach == nil {
		return false, nil
	}
	res, err := s.opts.Breach.Check(ctx, password)
	if err != nil {
		return false, err
	}
	if res.Breached {
		return false, phr.FieldErrorf(phr.EINVALID, field, "%s", errBreached.Message)
	}
	if res.RemoteDown {
		s.logger.WarnContext(ctx, "breached-password service unavailable; the offline lists decided, the account will be re-checked",
			"request_id", phr.RequestIDFromContext(ctx))
	}
	return res.RemoteDown, nil
}

// hashNewPassword checks a new password (policy, breaches) and hashes it.
func (s *Server) hashNewPassword(ctx context.Context, field, password string) (hash string, recheck bool, err error) {
	if recheck, err = s.checkNewPassword(ctx, field, password); err != nil {
		return "", false, err
	}
	hash, err = s.opts.Hasher.Hash(ctx, password)
	return hash, recheck, err
}

// passwordChanged records a new password of userID and tells the account's address.
func (s *Server) passwordChanged(ctx context.Context, event, userID string) {
	s.securityEvent(ctx, event, userID)
	s.goBackground(ctx, "mail_password_changed", func(ctx context.Context) error {
		return s.mailNotice(ctx, userID, "Your VitalNexa password was changed",
			"The password of your VitalNexa account was just changed, and every other session of the account "+
				"was signed out.\n\nIf that was not you, reset your password now at "+s.opts.PublicURL+"/reset-password "+
				"and contact us.\n")
	})
}

// handleRegister answers the same whether or not the email is taken: the owner of a
// taken address gets a mail saying so instead of a second account.
func (s *Server) handleRegister() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req registerRequest
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.checkRegistration(&req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		ctx := r.Context()
		if err := s.limit(ctx, accountKey("signin", req.Email), s.opts.Limits.PerAccount); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		hash, recheck, err := s.hashNewPassword(ctx, "password", req.Password)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		u := &phr.User{Email: strings.TrimSpace(req.Email), FullName: req.FullName, DateOfBirth: req.DateOfBirth}
		switch err := s.opts.Users.CreateUser(ctx, u, hash, recheck); phr.ErrorCode(err) {
		case "":
			s.goBackground(ctx, "mail_verification", func(ctx context.Context) error {
				return s.mailToken(ctx, u.ID, u.Email, phr.TokenVerifyEmail)
			})
		case phr.ECONFLICT:
			s.goBackground(ctx, "mail_account_exists", func(ctx context.Context) error {
				c, err := s.opts.Users.FindCredentialsByEmail(ctx, u.Email)
				if err != nil {
					return err
				}
				return s.mailNotice(ctx, c.UserID, "You already have a VitalNexa account",
					"Someone, perhaps you, tried to register a new VitalNexa account with this email address.\n\n"+
						"You already have an account. Sign in at "+s.opts.PublicURL+"/ .\n"+
						"If you forgot your password, reset it at "+s.opts.PublicURL+"/reset-password .\n\n"+
						"If this was not you, you can ignore this message; nothing has changed.\n")
			})
		default:
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "verification_email_sent"})
	})
}

// mailTexts are the subject, the path of the link and the text around it of each mailed token.
var mailTexts = map[string]struct{ subject, path, before, after string }{
	phr.TokenVerifyEmail: {"Verify your email address for VitalNexa", "/verify-email",
		"Welcome to VitalNexa.\n\nTo verify your email address, open this link within 24 hours:\n\n",
		"If you did not create an account, ignore this message.\n"},
	phr.TokenPasswordReset: {"Reset your VitalNexa password", "/reset-password",
		"Someone, perhaps you, asked to reset the password of your VitalNexa account.\n\n" +
			"To choose a new password, open this link within one hour:\n\n",
		"If this was not you, ignore this message: your password has not changed.\n"},
	phr.TokenUnlock: {"Your VitalNexa account was locked", "/unlock",
		"Your VitalNexa account was locked for 30 minutes after 5 failed attempts in a row: wrong passwords\n" +
			"(to sign in, or to confirm a change in a signed-in session) or wrong two-factor codes.\n\n" +
			"If that was you, you can unlock it now with this link (it works once):\n\n",
		"If it was not you, someone may be guessing your password, or using a session of yours; if you use\n" +
			"two-factor authentication and did not mistype codes, someone may know your password. Unlock your\n" +
			"account with the link, change your password (that ends every other session) and look at your\n" +
			"sessions and access history. The failed attempts let nobody in.\n"},
}

// mailToken stores a fresh single-use token of the purpose for the user and mails its link.
func (s *Server) mailToken(ctx context.Context, userID, email, purpose string) error {
	token, err := auth.NewOpaqueToken()
	if err != nil {
		return err
	}
	if err := s.opts.Accounts.CreateAccountToken(ctx, userID, purpose, auth.HashToken(token), s.now().Add(phr.TokenTTL[purpose])); err != nil {
		return err
	}
	t := mailTexts[purpose]
	link := s.opts.PublicURL + t.path + "?token=" + url.QueryEscape(token)
	return s.opts.Mailer.SendMail(ctx, &phr.Mail{To: email, Subject: t.subject, Text: t.before + link + "\n\n" + t.after})
}

// mailNotice sends a notice about the account to its email address.
func (s *Server) mailNotice(ctx context.Context, userID, subject, text string) error {
	email, err := s.opts.Users.FindEmailForUser(ctx, userID)
	if err != nil {
		return err
	}
	return s.opts.Mailer.SendMail(ctx, &phr.Mail{To: email, Subject: subject, Text: text})
}

type tokenRequest struct {
	Token string `json:"token"`
}

// spendToken spends a mailed token of the purpose from the request body.
func (s *Server) spendToken(r *http.Request, purpose string) (string, error) {
	var req tokenRequest
	if err := decodeJSON(bodyOf(r), &req); err != nil {
		return "", err
	}
	id, err := s.opts.Accounts.SpendAccountToken(r.Context(), purpose, auth.HashToken(req.Token))
	if phr.ErrorCode(err) == phr.ENOTFOUND {
		return "", errBadLink
	}
	return id, err
}

func (s *Server) handleVerifyEmail() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.spendToken(r, phr.TokenVerifyEmail)
		if err == nil {
			err = s.opts.Accounts.MarkEmailVerified(r.Context(), id)
		}
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "verified"})
	})
}

func (s *Server) handleUnlock() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.spendToken(r, phr.TokenUnlock)
		if err == nil {
			err = s.opts.Accounts.Unlock(r.Context(), id)
		}
		if err == nil {
			err = s.resetSignInLimit(r.Context(), id)
		}
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		infoFrom(r.Context()).userID = id
		s.securityEvent(r.Context(), "account.unlocked", id)
		writeJSON(w, http.StatusOK, map[string]string{"status": "unlocked"})
	})
}

// resetSignInLimit clears the per-account sign-in count of userID: the owner has just
// proved control of the address (an unlock or reset link), and a stranger's guesses must not
// keep them out any longer.
func (s *Server) resetSignInLimit(ctx context.Context, userID string) error {
	if s.opts.RateLimiter == nil {
		return nil
	}
	email, err := s.opts.Users.FindEmailForUser(ctx, userID)
	if err != nil {
		return err
	}
	return s.opts.RateLimiter.Reset(ctx, accountKey("signin", email))
}

type emailRequest struct {
	Email string `json:"email"`
}

// mailIfAccount runs send in the background for the account of the email in the body, if
// there is one, and answers 202 with status either way: the answer and its timing say
// nothing about whether the account exists.
func (s *Server) mailIfAccount(flow, status string, send func(ctx context.Context, c *phr.Credentials, email string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req emailRequest
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := checkEmail(req.Email); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		ctx := r.Context()
		if err := s.limit(ctx, accountKey(flow, req.Email), s.opts.Limits.PerAccount); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		email := strings.TrimSpace(req.Email)
		s.goBackground(ctx, status, func(ctx context.Context) error {
			c, err := s.opts.Users.FindCredentialsByEmail(ctx, email)
			if phr.ErrorCode(err) == phr.ENOTFOUND {
				return nil
			}
			if err != nil {
				return err
			}
			return send(ctx, c, email)
		})
		writeJSON(w, http.StatusAccepted, map[string]string{"status": status})
	})
}

func (s *Server) handleResendVerification() http.Handler {
	return s.mailIfAccount("resend", "verification_email_sent", func(ctx context.Context, c *phr.Credentials, email string) error {
		if c.EmailVerified {
			return nil
		}
		return s.mailToken(ctx, c.UserID, email, phr.TokenVerifyEmail)
	})
}

func (s *Server) handlePasswordReset() http.Handler {
	return s.mailIfAccount("reset", "password_reset_email_sent", func(ctx context.Context, c *phr.Credentials, email string) error {
		return s.mailToken(ctx, c.UserID, email, phr.TokenPasswordReset)
	})
}

// handlePasswordResetConfirm sets a new password with a mailed reset token, and ends every
// session of the account.
func (s *Server) handlePasswordResetConfirm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token       string `json:"token"`
			NewPassword string `json:"new_password"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		ctx := r.Context()
		hash, recheck, err := s.hashNewPassword(ctx, "new_password", req.NewPassword)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		// The token is spent only once the new password is ready, so a busy hasher does not
		// cost the user their link.
		id, err := s.opts.Accounts.SpendAccountToken(ctx, phr.TokenPasswordReset, auth.HashToken(req.Token))
		if phr.ErrorCode(err) == phr.ENOTFOUND {
			err = errBadLink
		}
		if err == nil {
			err = s.opts.Accounts.SetPassword(ctx, id, hash, recheck, "")
		}
		if err == nil {
			// The link came by mail: whoever followed it controls the address.
			err = s.opts.Accounts.MarkEmailVerified(ctx, id)
		}
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.resetSignInLimit(ctx, id); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		infoFrom(ctx).userID = id
		s.passwordChanged(ctx, "password.reset", id)
		writeJSON(w, http.StatusOK, map[string]string{"status": "password_changed"})
	})
}

type credentialsRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	OTP      string `json:"otp"`
}

type tokenPair struct {
	AccessToken            string `json:"access_token"`
	RefreshToken           string `json:"refresh_token"`
	TokenType              string `json:"token_type"`
	ExpiresIn              int    `json:"expires_in"`
	PasswordChangeRequired bool   `json:"password_change_required,omitempty"`
	expiresAt              time.Time
}

// checkPassword compares password with userID's, counting the attempt against the lockout
// first. It returns errBadCredentials for a wrong password and for a locked or disabled
// account alike, in the same time; the attempt that locks the account mails the owner.
func (s *Server) checkPassword(ctx context.Context, c *phr.Credentials, password string) (phr.LoginAttempt, error) {
	attempt, err := s.opts.Accounts.BeginLoginAttempt(ctx, c.UserID)
	if err != nil {
		return attempt, err
	}
	if !attempt.Allowed {
		if err := s.opts.Hasher.CompareDummy(ctx, password); err != nil {
			return attempt, err
		}
		return attempt, errBadCredentials
	}
	ok, err := s.opts.Hasher.Compare(ctx, c.PasswordHash, password)
	if err != nil {
		// A busy hasher is not the user's failure.
		if phr.ErrorCode(err) == phr.EUNAVAILABLE {
			_ = s.opts.Accounts.RefundLoginAttempt(ctx, c.UserID)
		}
		return attempt, err
	}
	if !ok {
		s.failedAttempt(ctx, c.UserID, attempt)
		return attempt, errBadCredentials
	}
	return attempt, nil
}

// failedAttempt reports the attempt that locked the account: a log line, a security event
// and a mail to the owner with a single-use unlock link, so that a stranger who knows the
// address cannot keep its owner out.
func (s *Server) failedAttempt(ctx context.Context, userID string, attempt phr.LoginAttempt) {
	if attempt.Failures != phr.MaxFailedLogins {
		return
	}
	s.securityEvent(ctx, "account.locked", userID)
	s.goBackground(ctx, "mail_unlock", func(ctx context.Context) error {
		email, err := s.opts.Users.FindEmailForUser(ctx, userID)
		if err != nil {
			return err
		}
		return s.mailToken(ctx, userID, email, phr.TokenUnlock)
	})
}

// checkSecondFactor checks a TOTP code or a recovery code for userID.
func (s *Server) checkSecondFactor(ctx context.Context, userID string, mfa *phr.MFAState, otp string) (bool, error) {
	if step, ok := auth.VerifyTOTP(mfa.Secret, otp, s.now(), mfa.LastStep); ok {
		// Compare-and-set: two requests with the same code cannot both pass.
		return s.opts.Accounts.UseMFAStep(ctx, userID, step)
	}
	code := auth.NormalizeRecoveryCode(otp)
	if len(code) < 8 {
		return false, nil
	}
	ok, err := s.opts.Accounts.UseRecoveryCode(ctx, userID, auth.HashToken(code))
	if ok {
		s.securityEvent(ctx, "mfa.recovery_code_used", userID)
	}
	return ok, err
}

// signIn checks credentials (and the second factor when the account has one) and starts a
// session. Unknown email, wrong password, locked and disabled accounts take the same time
// and give the same answer.
func (s *Server) signIn(r *http.Request) (*tokenPair, error) {
	var req credentialsRequest
	if err := decodeJSON(bodyOf(r), &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	// A busy hasher answers 503 for every email alike, so load tells nothing either.
	if checkEmail(req.Email) != nil || req.Password == "" {
		if err := s.opts.Hasher.CompareDummy(ctx, req.Password); err != nil {
			return nil, err
		}
		return nil, errBadCredentials
	}
	creds, err := s.opts.Users.FindCredentialsByEmail(ctx, req.Email)
	found := err == nil
	if err != nil && phr.ErrorCode(err) != phr.ENOTFOUND {
		return nil, err
	}
	if err := s.limit(ctx, accountKey("signin", req.Email), s.opts.Limits.PerAccount); err != nil {
		// A locked account sees the lockout answer, not a bare 429.
		if found {
			if a, aerr := s.opts.Accounts.FindAccount(phr.NewContextWithUserID(ctx, creds.UserID)); aerr == nil && a.LockedUntil.After(s.now()) {
				return nil, errBadCredentials
			}
		}
		return nil, err
	}
	if !found {
		if err := s.opts.Hasher.CompareDummy(ctx, req.Password); err != nil {
			return nil, err
		}
		return nil, errBadCredentials
	}
	// The audit row names the account even when the attempt fails, so guessing at one
	// account can be traced; the client learns nothing from it.
	infoFrom(ctx).userID = creds.UserID
	attempt, err := s.checkPassword(ctx, creds, req.Password)
	if err != nil {
		return nil, err
	}
	mfa, err := s.opts.Accounts.FindMFA(ctx, creds.UserID)
	if err != nil {
		return nil, err
	}
	if mfa.Enabled {
		if req.OTP == "" {
			// The password was right; asking for the code is not a failure.
			if err := s.opts.Accounts.RefundLoginAttempt(ctx, creds.UserID); err != nil {
				return nil, err
			}
			return nil, errMFARequired
		}
		ok, err := s.checkSecondFactor(ctx, creds.UserID, mfa, req.OTP)
		if err != nil {
			return nil, err
		}
		if !ok {
			s.failedAttempt(ctx, creds.UserID, attempt)
			return nil, errBadOTP
		}
	}
	if err := s.opts.Accounts.LoginSucceeded(ctx, creds.UserID); err != nil {
		return nil, err
	}
	s.afterPasswordVerified(ctx, creds, req.Password)
	if !creds.EmailVerified {
		return nil, phr.Errorf(phr.EFORBIDDEN, "Verify your email address before signing in.")
	}
	uctx := phr.NewContextWithUserID(ctx, creds.UserID)
	p, err := s.startSession(uctx, creds.UserID, cleanUserAgent(r.UserAgent()))
	if err != nil {
		return nil, err
	}
	a, err := s.opts.Accounts.FindAccount(uctx)
	if err != nil {
		return nil, err
	}
	p.PasswordChangeRequired = a.PasswordBreached
	return p, nil
}

// afterPasswordVerified does what needs the plaintext password: a fresh hash when the stored
// one uses an older pepper or cost, and the breach re-check the account is owed. Neither
// blocks the sign-in when it fails.
func (s *Server) afterPasswordVerified(ctx context.Context, c *phr.Credentials, password string) {
	if s.opts.Hasher.NeedsRehash(c.PasswordHash) {
		if h, err := s.opts.Hasher.Hash(ctx, password); err == nil {
			if err := s.opts.Accounts.RehashPassword(ctx, c.UserID, h); err != nil {
				s.logger.ErrorContext(ctx, "rehash failed", "user_id", c.UserID, "err", err.Error())
			}
		}
	}
	if c.PasswordRecheck && s.opts.Breach != nil {
		res, err := s.opts.Breach.Check(ctx, password)
		if err != nil || !res.RemoteChecked {
			return
		}
		if err := s.opts.Accounts.SetPasswordBreached(ctx, c.UserID, res.Breached); err != nil {
			s.logger.ErrorContext(ctx, "breach re-check not stored", "user_id", c.UserID, "err", err.Error())
			return
		}
		if res.Breached {
			s.securityEvent(ctx, "password.found_in_breach", c.UserID)
		}
	}
}

func (s *Server) startSession(ctx context.Context, userID, device string) (*tokenPair, error) {
	refresh, err := auth.NewOpaqueToken()
	if err != nil {
		return nil, err
	}
	sess, err := s.opts.Sessions.CreateSession(ctx, auth.HashToken(refresh), s.now().Add(phr.SessionLifetime), device)
	if err != nil {
		return nil, err
	}
	return s.issue(userID, sess, refresh)
}

func (s *Server) issue(userID string, sess *phr.Session, refresh string) (*tokenPair, error) {
	access, exp, err := s.opts.Tokens.Issue(userID, sess.ID)
	if err != nil {
		return nil, err
	}
	return &tokenPair{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int(math.Ceil(exp.Sub(s.now()).Seconds())), expiresAt: sess.ExpiresAt}, nil
}

// handleToken is sign-in for API clients: tokens in the body.
func (s *Server) handleToken() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.signIn(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
}

// handleLogin is sign-in for browsers: tokens only in HttpOnly cookies.
func (s *Server) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.signIn(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.setCookies(w, p)
		writeJSON(w, http.StatusOK, cookieAnswer(p))
	})
}

func cookieAnswer(p *tokenPair) map[string]any {
	m := map[string]any{"expires_in": p.ExpiresIn}
	if p.PasswordChangeRequired {
		m["password_change_required"] = true
	}
	return m
}

func (s *Server) setCookies(w http.ResponseWriter, p *tokenPair) {
	http.SetCookie(w, &http.Cookie{Name: accessCookie, Value: p.AccessToken, Path: "/", MaxAge: p.ExpiresIn,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: refreshCookie, Value: p.RefreshToken, Path: "/",
		MaxAge: int(p.expiresAt.Sub(s.now()).Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func clearCookies(w http.ResponseWriter) {
	for _, name := range []string{accessCookie, refreshCookie} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
}

// clientFingerprint tells one client from another for the refresh grace period: its
// address and user agent, hashed.
func (s *Server) clientFingerprint(r *http.Request) []byte {
	sum := sha256.Sum256([]byte(s.clientIP(r) + "\x00" + r.UserAgent()))
	return sum[:]
}

// handleRefresh exchanges a refresh token (body, or the refresh cookie) for a new pair.
func (s *Server) handleRefresh() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			RefreshToken string `json:"refresh_token"`
		}
		fromCookie := false
		if body := bodyOf(r); len(strings.TrimSpace(string(body))) > 0 {
			if err := decodeJSON(body, &req); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		} else if c, err := r.Cookie(refreshCookie); err == nil {
			req.RefreshToken, fromCookie = c.Value, true
		}
		if fromCookie && !s.ownOrigin(r) {
			writeError(w, r, s.logger, errCrossSite)
			return
		}
		if req.RefreshToken == "" {
			writeError(w, r, s.logger, phr.Errorf(phr.EUNAUTHORIZED, "A refresh token is required."))
			return
		}
		ctx := r.Context()
		next := auth.NextRefreshToken(s.opts.RefreshKey, req.RefreshToken)
		sess, err := s.opts.Sessions.RotateRefreshToken(ctx, auth.HashToken(req.RefreshToken), auth.HashToken(next), s.clientFingerprint(r))
		if errors.Is(err, phr.ErrRefreshTokenReused) {
			infoFrom(ctx).userID = sess.UserID
			s.securityEvent(ctx, "refresh_token.reused", sess.UserID)
		}
		if err != nil {
			if fromCookie {
				clearCookies(w)
			}
			writeError(w, r, s.logger, err)
			return
		}
		infoFrom(ctx).userID = sess.UserID
		p, err := s.issue(sess.UserID, sess, next)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if fromCookie {
			s.setCookies(w, p)
			writeJSON(w, http.StatusOK, cookieAnswer(p))
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
}

func (s *Server) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := s.opts.Sessions.EndSession(r.Context(), sessionFrom(r.Context()).ID, phr.EndedByLogout)
		if err != nil && phr.ErrorCode(err) != phr.ENOTFOUND {
			writeError(w, r, s.logger, err)
			return
		}
		clearCookies(w)
		w.WriteHeader(http.StatusNoContent)
	})
}

// securityEvent records something that happened to an account outside the request's own
// audit row: in the audit trail (action "EVENT <name>") and in the log, without PHI.
func (s *Server) securityEvent(ctx context.Context, name, userID string) {
	reqID := phr.RequestIDFromContext(ctx)
	s.logger.WarnContext(ctx, "security event", "event", name, "user_id", userID, "request_id", reqID)
	ri := infoFrom(ctx)
	ev := &phr.AuditEvent{Timestamp: s.now().UTC(), UserID: userID, Action: "EVENT " + name, RequestID: reqID,
		IPAddress: ri.ip, UserAgent: ri.userAgent}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.audit.WriteAuditEvent(actx, ev); err != nil {
		s.logger.ErrorContext(ctx, "security event not audited", "event", name, "request_id", reqID, "err", err.Error())
	}
}

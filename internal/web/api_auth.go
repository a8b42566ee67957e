package web

import (
	"context"
	"math"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

const (
	accessCookie      = "__Host-vitalnexa_access"
	refreshCookie     = "__Host-vitalnexa_refresh"
	verificationTTL   = 24 * time.Hour
	sessionLifetime   = 7 * 24 * time.Hour
	maxEmailLength    = 254
	maxFullNameLength = 200
)

var errBadCredentials = phr.Errorf(phr.EUNAUTHORIZED, "The email or password is not correct.")

// authenticate finds the access token (Authorization: Bearer, else the access cookie),
// checks it and its session, and returns r with the user in its context.
func (s *Server) authenticate(r *http.Request) (*http.Request, error) {
	token, fromCookie := "", false
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
	// A cookie rides along on any request the browser makes; refuse the ones another
	// site started (SameSite=Strict is the first line, this the second).
	if fromCookie && r.Method != http.MethodGet && r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return r, phr.Errorf(phr.EFORBIDDEN, "Cross-site requests are not allowed.")
	}
	claims, err := s.opts.Tokens.Parse(token)
	if err != nil {
		return r, err
	}
	ctx := phr.NewContextWithUserID(r.Context(), claims.UserID)
	if err := s.opts.Sessions.CheckSession(ctx, claims.SessionID); err != nil {
		return r, err
	}
	infoFrom(ctx).userID = claims.UserID
	ctx = context.WithValue(ctx, sessionKey{}, claims.SessionID)
	return r.WithContext(ctx), nil
}

type sessionKey struct{}

func sessionIDFrom(ctx context.Context) string { s, _ := ctx.Value(sessionKey{}).(string); return s }

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
	req.FullName = strings.TrimSpace(req.FullName)
	if req.FullName == "" {
		return phr.FieldErrorf(phr.EINVALID, "full_name", "is required")
	}
	if err := phr.CheckText("full_name", req.FullName, maxFullNameLength, false); err != nil {
		return err
	}
	dob, err := time.Parse(time.DateOnly, req.DateOfBirth)
	if err != nil {
		return phr.FieldErrorf(phr.EINVALID, "date_of_birth", "must be a date (YYYY-MM-DD)")
	}
	if dob.After(s.now()) || dob.Year() < 1880 {
		return phr.FieldErrorf(phr.EINVALID, "date_of_birth", "must be a past date")
	}
	return nil
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
		hash, err := s.opts.Hasher.Hash(ctx, req.Password)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		u := &phr.User{Email: strings.TrimSpace(req.Email), FullName: req.FullName, DateOfBirth: req.DateOfBirth}
		switch err := s.opts.Users.CreateUser(ctx, u, hash); phr.ErrorCode(err) {
		case "":
			err = s.sendVerification(ctx, u)
			if err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		case phr.ECONFLICT:
			err = s.opts.Mailer.SendMail(ctx, &phr.Mail{To: u.Email, Subject: "You already have a VitalNexa account",
				Text: "Someone, perhaps you, tried to register a new VitalNexa account with this email address.\n\n" +
					"You already have an account. Sign in at " + s.opts.PublicURL + "/ .\n\n" +
					"If this was not you, you can ignore this message; nothing has changed.\n"})
			if err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		default:
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "verification_email_sent"})
	})
}

func (s *Server) sendVerification(ctx context.Context, u *phr.User) error {
	token, err := auth.NewOpaqueToken()
	if err != nil {
		return err
	}
	if err := s.opts.Users.CreateEmailVerification(ctx, u.ID, auth.HashToken(token), s.now().Add(verificationTTL)); err != nil {
		return err
	}
	link := s.opts.PublicURL + "/verify-email?token=" + url.QueryEscape(token)
	return s.opts.Mailer.SendMail(ctx, &phr.Mail{To: u.Email, Subject: "Verify your email address for VitalNexa",
		Text: "Welcome to VitalNexa.\n\nTo verify your email address, open this link within 24 hours:\n\n" + link + "\n\n" +
			"If you did not create an account, ignore this message.\n"})
}

func (s *Server) handleVerifyEmail() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token string `json:"token"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if _, err := s.opts.Users.VerifyEmail(r.Context(), auth.HashToken(req.Token)); err != nil {
			if phr.ErrorCode(err) == phr.ENOTFOUND {
				err = phr.FieldErrorf(phr.EINVALID, "token", "The verification link is invalid or has expired.")
			}
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "verified"})
	})
}

type credentialsRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	expiresAt    time.Time
}

// signIn checks credentials and starts a session. Unknown email and wrong password take
// the same time and give the same answer.
func (s *Server) signIn(r *http.Request) (*tokenPair, error) {
	var req credentialsRequest
	if err := decodeJSON(bodyOf(r), &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	if checkEmail(req.Email) != nil || req.Password == "" {
		s.opts.Hasher.CompareDummy(ctx, req.Password)
		return nil, errBadCredentials
	}
	creds, err := s.opts.Users.FindCredentialsByEmail(ctx, req.Email)
	if phr.ErrorCode(err) == phr.ENOTFOUND {
		s.opts.Hasher.CompareDummy(ctx, req.Password)
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, err
	}
	ok, err := s.opts.Hasher.Compare(ctx, creds.PasswordHash, req.Password)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errBadCredentials
	}
	infoFrom(ctx).userID = creds.UserID
	if !creds.EmailVerified {
		return nil, phr.Errorf(phr.EFORBIDDEN, "Verify your email address before signing in.")
	}
	return s.startSession(phr.NewContextWithUserID(ctx, creds.UserID), creds.UserID)
}

func (s *Server) startSession(ctx context.Context, userID string) (*tokenPair, error) {
	refresh, err := auth.NewOpaqueToken()
	if err != nil {
		return nil, err
	}
	sess, err := s.opts.Sessions.CreateSession(ctx, auth.HashToken(refresh), s.now().Add(sessionLifetime))
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
		writeJSON(w, http.StatusOK, map[string]int{"expires_in": p.ExpiresIn})
	})
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
		if req.RefreshToken == "" {
			writeError(w, r, s.logger, phr.Errorf(phr.EUNAUTHORIZED, "A refresh token is required."))
			return
		}
		next, err := auth.NewOpaqueToken()
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		sess, err := s.opts.Sessions.RotateRefreshToken(r.Context(), auth.HashToken(req.RefreshToken), auth.HashToken(next))
		if err != nil {
			if fromCookie {
				clearCookies(w)
			}
			writeError(w, r, s.logger, err)
			return
		}
		infoFrom(r.Context()).userID = sess.UserID
		p, err := s.issue(sess.UserID, sess, next)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if fromCookie {
			s.setCookies(w, p)
			writeJSON(w, http.StatusOK, map[string]int{"expires_in": p.ExpiresIn})
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
}

func (s *Server) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.opts.Sessions.EndSession(r.Context(), sessionIDFrom(r.Context())); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		clearCookies(w)
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) handleMe() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.opts.Users.FindUserByID(r.Context(), phr.UserIDFromContext(r.Context()))
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": u.ID, "email": u.Email, "full_name": u.FullName,
			"date_of_birth": u.DateOfBirth, "email_verified": u.EmailVerified})
	})
}

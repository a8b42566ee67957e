package web

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// recoveryCodeCount is how many single-use recovery codes an MFA enrolment hands out.
const recoveryCodeCount = 10

func (s *Server) handleMe() http.Handler { return http.HandlerFunc(s.writeMe) }

// writeMe answers the signed-in user's profile and account state, for GET /api/me and
// after a correction.
func (s *Server) writeMe(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, err := s.opts.Users.FindUserByID(ctx, phr.UserIDFromContext(ctx))
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	a, err := s.opts.Accounts.FindAccount(ctx)
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": u.ID, "email": u.Email, "full_name": u.FullName,
		"date_of_birth": u.DateOfBirth, "email_verified": u.EmailVerified, "role": a.Role,
		"mfa_enabled": a.MFAEnabled, "password_change_required": a.PasswordBreached})
}

// handleMeUpdate is the right to rectification (GDPR Art. 16) of the profile. The name and
// the date of birth, validated as at registration, change at once, and the values they
// replace go to the user's history. A new email address goes through the confirmed change
// of POST /api/me/email (the current password unless the sign-in is recent, a link to the
// new address, a notice to the old one) and lands, and reaches the history, only when the
// link is followed. Each call is logged as a rectification request answered at once. It
// answers the profile as GET /api/me does.
func (s *Server) handleMeUpdate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			FullName        *string `json:"full_name"`
			DateOfBirth     *string `json:"date_of_birth"`
			Email           *string `json:"email"`
			CurrentPassword *string `json:"current_password"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if req.FullName == nil && req.DateOfBirth == nil && req.Email == nil {
			writeError(w, r, s.logger, phr.Errorf(phr.EINVALID, "Name at least one field to change."))
			return
		}
		ctx := r.Context()
		var upd phr.UserUpdate
		if req.FullName != nil {
			name, err := checkFullName(*req.FullName)
			if err != nil {
				writeError(w, r, s.logger, err)
				return
			}
			upd.FullName = &name
		}
		if req.DateOfBirth != nil {
			if err := s.checkDateOfBirth(*req.DateOfBirth); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
			upd.DateOfBirth = req.DateOfBirth
		}
		newEmail := ""
		if req.Email != nil {
			if err := checkEmail(*req.Email); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
			current, err := s.opts.Users.FindEmailForUser(ctx, phr.UserIDFromContext(ctx))
			if err != nil {
				writeError(w, r, s.logger, err)
				return
			}
			// A form sent back whole names the address it shows: that is no change to confirm.
			if e := strings.TrimSpace(*req.Email); e != current {
				newEmail = e
			}
		}
		// Before anything changes: a wrong password leaves the whole profile as it was. A
		// password sent with a name or date change alone is checked too: a client that sends
		// one expects it to matter, and a wrong one must not pass unremarked.
		if newEmail != "" || req.CurrentPassword != nil {
			if err := s.reauthenticate(ctx, req.CurrentPassword); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		if upd.FullName != nil || upd.DateOfBirth != nil {
			if _, err := s.opts.Users.UpdateUser(ctx, upd); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		if newEmail != "" {
			if err := s.beginEmailChange(ctx, newEmail); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		// Logged once the correction is made; if the log cannot be written the client is
		// told, and a retry is harmless (an unchanged value adds no history).
		if err := s.recordAnsweredRequest(ctx, phr.RequestRectification); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.writeMe(w, r)
	})
}

// handlePasswordChange sets a new password for the signed-in user. It needs the current
// password, unless the session signed in within the last 15 minutes; a wrong current
// password counts towards the lockout like a failed sign-in. Every other session ends.
func (s *Server) handlePasswordChange() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CurrentPassword *string `json:"current_password"`
			NewPassword     string  `json:"new_password"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		ctx := r.Context()
		userID := phr.UserIDFromContext(ctx)
		sess := sessionFrom(ctx)
		if err := s.reauthenticate(ctx, req.CurrentPassword); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		hash, recheck, err := s.hashNewPassword(ctx, "new_password", req.NewPassword)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.opts.Accounts.SetPassword(ctx, userID, hash, recheck, sess.ID); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.passwordChanged(ctx, "password.changed", userID)
		writeJSON(w, http.StatusOK, map[string]string{"status": "password_changed"})
	})
}

// reauthenticate asks the signed-in user to prove it is them before an account change:
// the current password, unless the session signed in within the last 15 minutes. A wrong
// password counts towards the lockout like a failed sign-in.
func (s *Server) reauthenticate(ctx context.Context, currentPassword *string) error {
	recent := s.now().Sub(sessionFrom(ctx).CreatedAt) <= phr.RecentLoginInterval
	if currentPassword == nil {
		if recent {
			return nil
		}
		return phr.FieldErrorf(phr.EINVALID, "current_password", "is required when the sign-in is older than 15 minutes")
	}
	email, err := s.opts.Users.FindEmailForUser(ctx, phr.UserIDFromContext(ctx))
	if err != nil {
		return err
	}
	creds, err := s.opts.Users.FindCredentialsByEmail(ctx, email)
	if err != nil {
		return err
	}
	if _, err := s.checkPassword(ctx, creds, *currentPassword); err != nil {
		if err == errBadCredentials {
			return phr.FieldErrorf(phr.EINVALID, "current_password", "is not correct")
		}
		return err
	}
	return nil
}

// handleEmailChange starts a change of address: a link to the new address confirms it,
// and the old address is told at once.
func (s *Server) handleEmailChange() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CurrentPassword *string `json:"current_password"`
			NewEmail        string  `json:"new_email"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := checkEmail(req.NewEmail); err != nil {
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "new_email", "is not an email address"))
			return
		}
		ctx := r.Context()
		if err := s.reauthenticate(ctx, req.CurrentPassword); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.beginEmailChange(ctx, strings.TrimSpace(req.NewEmail)); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "verification_email_sent"})
	})
}

// beginEmailChange stores a pending change of the signed-in user's address to newEmail,
// mails the confirmation link there and a notice to the current address. Nothing changes
// until the link is followed. The caller has checked the address and re-authenticated.
func (s *Server) beginEmailChange(ctx context.Context, newEmail string) error {
	userID := phr.UserIDFromContext(ctx)
	token, err := auth.NewOpaqueToken()
	if err != nil {
		return err
	}
	if err := s.opts.Accounts.CreateEmailChange(ctx, auth.HashToken(token), newEmail, s.now().Add(phr.TokenTTL[phr.TokenEmailChange])); err != nil {
		return err
	}
	s.securityEvent(ctx, "email.change_requested", userID)
	link := s.opts.PublicURL + "/confirm-email?token=" + url.QueryEscape(token)
	s.goBackground(ctx, "mail_email_change", func(ctx context.Context) error {
		// An address that is another account's gets no link, which could never be spent,
		// but a word to its owner, as a second registration does. The answer to the request
		// is the same either way, so it does not tell who has an account.
		switch owner, err := s.opts.Users.FindCredentialsByEmail(ctx, newEmail); {
		case err == nil && owner.UserID != userID:
			if err := s.mailNotice(ctx, owner.UserID, "Your email address was given for another VitalNexa account",
				"Someone signed in to another VitalNexa account asked to move it to this email address.\n\n"+
					"This address belongs to your account, so nothing has changed and nothing will.\n"+
					"If the other account is yours as well, you can sign in to it with its own address.\n"); err != nil {
				return err
			}
		case err != nil && phr.ErrorCode(err) != phr.ENOTFOUND:
			return err
		default:
			if err := s.opts.Mailer.SendMail(ctx, &phr.Mail{To: newEmail, Subject: "Confirm your new email address for VitalNexa",
				Text: "To make this the email address of your VitalNexa account, open this link within 24 hours:\n\n" +
					link + "\n\nIf you did not ask for this, ignore this message.\n"}); err != nil {
				return err
			}
		}
		return s.mailNotice(ctx, userID, "A change of your VitalNexa email address was requested",
			"Someone signed in to your VitalNexa account asked to change its email address to "+maskEmail(newEmail)+".\n"+
				"Nothing changes until the new address is confirmed.\n\n"+
				"If that was not you, change your password at "+s.opts.PublicURL+"/reset-password and sign out every session.\n")
	})
	return nil
}

// handleEmailConfirm spends an email-change link: the account moves to the new address and
// the old one is told.
func (s *Server) handleEmailConfirm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req tokenRequest
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		ctx := r.Context()
		id, old, _, err := s.opts.Accounts.ConfirmEmailChange(ctx, auth.HashToken(req.Token))
		switch phr.ErrorCode(err) {
		case "":
		case phr.ENOTFOUND:
			writeError(w, r, s.logger, errBadLink)
			return
		case phr.ECONFLICT:
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "token", "This address cannot be used for your account."))
			return
		default:
			writeError(w, r, s.logger, err)
			return
		}
		infoFrom(ctx).userID = id
		s.securityEvent(ctx, "email.changed", id)
		s.goBackground(ctx, "mail_email_changed", func(ctx context.Context) error {
			return s.opts.Mailer.SendMail(ctx, &phr.Mail{To: old, Subject: "Your VitalNexa email address was changed",
				Text: "The email address of your VitalNexa account was changed, and mail now goes to the new address.\n\n" +
					"If that was not you, contact us at once.\n"})
		})
		writeJSON(w, http.StatusOK, map[string]string{"status": "email_changed"})
	})
}

// maskEmail shows enough of an address for its owner to recognise it: "a***@example.org".
func maskEmail(email string) string {
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" {
		return "***"
	}
	r := []rune(local)
	return string(r[0]) + "***@" + domain
}

// handleMFAEnrol starts a TOTP enrolment: a new secret, shown once, that becomes active
// when a code from it is confirmed.
func (s *Server) handleMFAEnrol() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		secret, err := auth.NewTOTPSecret()
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.opts.Accounts.BeginMFAEnrolment(ctx, secret); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		// The account label is the user id: an email in an authenticator app is PHI on a phone.
		writeJSON(w, http.StatusCreated, map[string]string{
			"secret":      base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret),
			"otpauth_url": auth.TOTPURL(secret, "VitalNexa", phr.UserIDFromContext(ctx)),
		})
	})
}

// handleMFAConfirm turns MFA on with a code from the pending secret and returns the
// recovery codes, once.
func (s *Server) handleMFAConfirm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OTP string `json:"otp"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		ctx := r.Context()
		userID := phr.UserIDFromContext(ctx)
		if err := s.limit(ctx, "mfa-confirm:"+userID, s.opts.Limits.PerAccount); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		mfa, err := s.opts.Accounts.FindMFA(ctx, userID)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if mfa.Enabled || mfa.Secret == nil {
			writeError(w, r, s.logger, phr.Errorf(phr.ECONFLICT, "There is no enrolment waiting for confirmation."))
			return
		}
		step, ok := auth.VerifyTOTP(mfa.Secret, req.OTP, s.now(), mfa.LastStep)
		if !ok {
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "otp", "The code is not correct."))
			return
		}
		codes, err := auth.NewRecoveryCodes(recoveryCodeCount)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		hashes := make([][]byte, len(codes))
		for i, c := range codes {
			hashes[i] = auth.HashToken(auth.NormalizeRecoveryCode(c))
		}
		if err := s.opts.Accounts.EnableMFA(ctx, step, hashes); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.securityEvent(ctx, "mfa.enabled", userID)
		writeJSON(w, http.StatusOK, map[string][]string{"recovery_codes": codes})
	})
}

// erasureReceipt is what a user gets when their account is erased: what went, when, and a
// signature by which the service can later show it issued the receipt.
type erasureReceipt struct {
	UserID   string           `json:"user_id"`
	ErasedAt time.Time        `json:"erased_at"`
	Erased   map[string]int64 `json:"erased"`
	Note     string           `json:"note"`
}

// handleErase erases the signed-in user for good (GDPR Art. 17, CCPA delete). It needs the
// password, or a sign-in within the last 15 minutes. The audit trail keeps its rows, which
// no longer lead to a name.
func (s *Server) handleErase() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Password *string `json:"password"`
		}
		if body := bodyOf(r); len(bytes.TrimSpace(body)) > 0 {
			if err := decodeJSON(body, &req); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		ctx := r.Context()
		userID := phr.UserIDFromContext(ctx)
		if err := s.reauthenticate(ctx, req.Password); err != nil {
			if phr.ErrorField(err) == "current_password" {
				err = phr.FieldErrorf(phr.EINVALID, "password", "%s", phr.ErrorMessage(err))
			}
			writeError(w, r, s.logger, err)
			return
		}
		email, err := s.opts.Users.FindEmailForUser(ctx, userID)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		p, err := s.privacy()
		var erasure *phr.PrivacyRequest
		if err == nil {
			erasure, err = p.RecordPrivacyRequest(ctx, phr.RequestErasure)
		}
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		counts, err := s.opts.Users.EraseUser(ctx)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		// The request log outlives the account (deadlines are kept); it is answered now.
		if err := p.CompletePrivacyRequest(ctx, erasure.ID); err != nil {
			s.logger.ErrorContext(ctx, "erasure request not marked answered", "request_id", phr.RequestIDFromContext(ctx), "err", err.Error())
		}
		rec := erasureReceipt{UserID: userID, ErasedAt: stored(s.now()), Erased: counts,
			Note: "Your account and all its health records, test results, documents, history of changes, sessions and tokens were erased. " +
				"The audit trail keeps its rows as the law requires; they no longer lead to you. This cannot be undone."}
		payload, _ := json.Marshal(rec)
		m := hmac.New(sha256.New, s.opts.ReceiptKey)
		m.Write(payload)
		sig := base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		s.securityEvent(ctx, "account.erased", userID)
		s.goBackground(ctx, "mail_erasure_receipt", func(ctx context.Context) error {
			return s.opts.Mailer.SendMail(ctx, &phr.Mail{To: email, Subject: "Your VitalNexa account was erased",
				Text: "Your VitalNexa account was erased. Your receipt:\n\n" + string(payload) + "\n\nsignature: " + sig + "\n"})
		})
		clearCookies(w)
		writeJSON(w, http.StatusOK, map[string]any{"receipt": rec, "signature": sig})
	})
}

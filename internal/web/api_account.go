package web

import (
	"context"
	"encoding/base32"
	"net/http"
	"strings"

	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// recoveryCodeCount is how many single-use recovery codes an MFA enrolment hands out.
const recoveryCodeCount = 10

func (s *Server) handleMe() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		recent := s.now().Sub(sess.CreatedAt) <= phr.RecentLoginInterval
		if req.CurrentPassword != nil || !recent {
			if req.CurrentPassword == nil {
				writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "current_password",
					"is required when the sign-in is older than 15 minutes"))
				return
			}
			email, err := s.opts.Users.FindEmailForUser(ctx, userID)
			var creds *phr.Credentials
			if err == nil {
				creds, err = s.opts.Users.FindCredentialsByEmail(ctx, email)
			}
			if err == nil {
				_, err = s.checkPassword(ctx, creds, *req.CurrentPassword)
			}
			if err == errBadCredentials {
				err = phr.FieldErrorf(phr.EINVALID, "current_password", "is not correct")
			}
			if err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		recheck, err := s.checkNewPassword(ctx, "new_password", req.NewPassword)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		hash, err := s.opts.Hasher.Hash(ctx, req.NewPassword)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.opts.Accounts.SetPassword(ctx, userID, hash, recheck, sess.ID); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.securityEvent(ctx, "password.changed", userID)
		s.goBackground(ctx, "mail_password_changed", func(ctx context.Context) error {
			return s.mailNotice(ctx, userID, "Your VitalNexa password was changed", strings.Replace(passwordChangedText, "%s", s.opts.PublicURL, 1))
		})
		writeJSON(w, http.StatusOK, map[string]string{"status": "password_changed"})
	})
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

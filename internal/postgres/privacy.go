package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.PrivacyService = (*DB)(nil)

// Privacy choices are appended to privacy_choices, which the server's role may insert into
// and read but never update or delete (no grant, and a trigger): the current state is the
// latest row per kind and purpose, ordered by id so that two choices in the same instant
// still have an order.

// FindPrivacySettings returns the current choices of the user in the context.
func (db *DB) FindPrivacySettings(ctx context.Context) (*phr.PrivacySettings, error) {
	st := &phr.PrivacySettings{Consents: map[string]bool{}, Objections: map[string]bool{}, ChangedAt: map[string]time.Time{}}
	for _, p := range phr.ConsentPurposes {
		st.Consents[p] = false
	}
	for _, p := range phr.ObjectionPurposes {
		st.Objections[p] = false
	}
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		var restricted, dns *time.Time
		if err := tx.QueryRow(ctx, `SELECT restricted_at, do_not_sell_at FROM users WHERE id = $1`,
			phr.UserIDFromContext(ctx)).Scan(&restricted, &dns); err != nil {
			return err
		}
		if restricted != nil {
			st.Restricted, st.RestrictedAt = true, restricted.UTC()
		}
		st.DoNotSell = dns != nil
		rows, err := tx.Query(ctx, `SELECT DISTINCT ON (kind, purpose) kind, purpose, value, created_at
			FROM privacy_choices WHERE kind IN ('consent', 'objection') ORDER BY kind, purpose, id DESC`)
		if err != nil {
			return err
		}
		var kind, purpose string
		var value bool
		var at time.Time
		_, err = pgx.ForEachRow(rows, []any{&kind, &purpose, &value, &at}, func() error {
			if kind == phr.ChoiceConsent {
				st.Consents[purpose] = value
			} else {
				st.Objections[purpose] = value
			}
			st.ChangedAt[kind+"/"+purpose] = at.UTC()
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// FindPrivacyChoices returns the user's history of one kind of choice (all kinds when
// kind is empty), newest first; the cursor is the id of the last entry of the page before.
func (db *DB) FindPrivacyChoices(ctx context.Context, kind, cursor string, limit int) ([]*phr.PrivacyChoice, string, error) {
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	var after *int64
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil || n < 1 {
			return nil, "", phr.FieldErrorf(phr.EINVALID, "cursor", "is not a valid cursor")
		}
		after = &n
	}
	var out []*phr.PrivacyChoice
	err = db.withUser(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, kind, purpose, value, created_at FROM privacy_choices
			WHERE ($1 = '' OR kind = $1) AND ($2::bigint IS NULL OR id < $2)
			ORDER BY id DESC LIMIT $3`, kind, after, limit+1)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*phr.PrivacyChoice, error) {
			c := &phr.PrivacyChoice{}
			err := r.Scan(&c.ID, &c.Kind, &c.Purpose, &c.Value, &c.At)
			c.At = c.At.UTC()
			return c, err
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = strconv.FormatInt(out[limit-1].ID, 10)
	}
	return out, next, nil
}

// SetConsent appends a grant or a withdrawal of consent for purpose.
func (db *DB) SetConsent(ctx context.Context, purpose string, granted bool) error {
	if !phr.IsConsentPurpose(purpose) {
		return phr.FieldErrorf(phr.EINVALID, "purpose", "is not a purpose of consent")
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		return db.appendChoice(ctx, tx, phr.ChoiceConsent, purpose, granted)
	})
}

// HasConsent reports whether the user's latest choice grants purpose and processing is
// not restricted. A withdrawal or a restriction committed before the call is seen.
func (db *DB) HasConsent(ctx context.Context, purpose string) (bool, error) {
	if !phr.IsConsentPurpose(purpose) {
		return false, phr.FieldErrorf(phr.EINVALID, "purpose", "is not a purpose of consent")
	}
	var ok bool
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT coalesce((SELECT value FROM privacy_choices
				WHERE kind = 'consent' AND purpose = $2 ORDER BY id DESC LIMIT 1), false)
			AND coalesce((SELECT restricted_at IS NULL FROM users WHERE id = $1), false)`,
			phr.UserIDFromContext(ctx), purpose).Scan(&ok)
	})
	return ok, err
}

// SetObjection appends an objection to purpose, or its withdrawal, and logs the request
// as answered at once.
func (db *DB) SetObjection(ctx context.Context, purpose string, objected bool) error {
	if !phr.IsObjectionPurpose(purpose) {
		return phr.FieldErrorf(phr.EINVALID, "purpose", "is not a purpose of objection")
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		if err := db.appendChoice(ctx, tx, phr.ChoiceObjection, purpose, objected); err != nil {
			return err
		}
		_, err := db.insertPrivacyRequest(ctx, tx, phr.RequestObjection, true)
		return err
	})
}

// SetRestricted sets or lifts the restriction of processing and logs the request as
// answered at once. Restricting again keeps the time of the first restriction.
func (db *DB) SetRestricted(ctx context.Context, restricted bool) error {
	return db.setPrivacyFlag(ctx, "restricted_at", phr.ChoiceRestriction, phr.RequestRestriction, restricted)
}

// IsRestricted reports whether the user in the context has restricted processing.
func (db *DB) IsRestricted(ctx context.Context) (bool, error) {
	var restricted bool
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT restricted_at IS NOT NULL FROM users WHERE id = $1`,
			phr.UserIDFromContext(ctx)).Scan(&restricted)
	})
	return restricted, err
}

// SetDoNotSell records the opt-out of sale and sharing, or its withdrawal, and logs the
// request as answered at once.
func (db *DB) SetDoNotSell(ctx context.Context, doNotSell bool) error {
	return db.setPrivacyFlag(ctx, "do_not_sell_at", phr.ChoiceDoNotSell, phr.RequestDoNotSell, doNotSell)
}

// setPrivacyFlag sets (keeping the first time) or clears a flag column of the user,
// appends the choice to its history and logs the request as answered. column is one of
// the constants above, never input.
func (db *DB) setPrivacyFlag(ctx context.Context, column, choice, request string, on bool) error {
	return db.withUser(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET `+column+` = CASE WHEN $2 THEN coalesce(`+column+`, $3) END
			WHERE id = $1`, phr.UserIDFromContext(ctx), on, db.now())
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errNoUser
		}
		if err := db.appendChoice(ctx, tx, choice, "", on); err != nil {
			return err
		}
		_, err = db.insertPrivacyRequest(ctx, tx, request, true)
		return err
	})
}

func (db *DB) appendChoice(ctx context.Context, tx pgx.Tx, kind, purpose string, value bool) error {
	_, err := tx.Exec(ctx, `INSERT INTO privacy_choices (user_id, kind, purpose, value, created_at)
		VALUES ($1, $2, $3, $4, $5)`, phr.UserIDFromContext(ctx), kind, purpose, value, db.now())
	return err
}

// RecordPrivacyRequest logs an open request of kind, received now and due one month
// later. The flow that answers it calls CompletePrivacyRequest.
func (db *DB) RecordPrivacyRequest(ctx context.Context, kind string) (*phr.PrivacyRequest, error) {
	if !phr.IsPrivacyRequestKind(kind) {
		return nil, phr.FieldErrorf(phr.EINVALID, "kind", "is not a kind of privacy request")
	}
	var req *phr.PrivacyRequest
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		var err error
		req, err = db.insertPrivacyRequest(ctx, tx, kind, false)
		return err
	})
	return req, err
}

func (db *DB) insertPrivacyRequest(ctx context.Context, tx pgx.Tx, kind string, completed bool) (*phr.PrivacyRequest, error) {
	now := db.now().UTC()
	r := &phr.PrivacyRequest{ID: uuid.NewString(), UserID: phr.UserIDFromContext(ctx), Kind: kind,
		ReceivedAt: now, DueAt: phr.PrivacyRequestDueAt(now)}
	var completedAt *time.Time
	if completed {
		r.CompletedAt = now
		completedAt = &now
	}
	_, err := tx.Exec(ctx, `INSERT INTO privacy_requests (id, user_id, kind, received_at, due_at, completed_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, r.ID, r.UserID, r.Kind, r.ReceivedAt, r.DueAt, completedAt)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// CompletePrivacyRequest marks one of the user's requests answered now. It works after an
// erasure too, as long as the context still names the erased user's id.
func (db *DB) CompletePrivacyRequest(ctx context.Context, id string) error {
	if uuid.Validate(id) != nil {
		return errNoUser
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE privacy_requests SET completed_at = $2 WHERE id = $1 AND completed_at IS NULL`, id, db.now())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM privacy_requests WHERE id = $1)`, id).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return phr.Errorf(phr.ECONFLICT, "The request was already completed.")
		}
		return errNoUser
	})
}

// FindPrivacyRequests lists the user's own requests, newest first (RLS: nobody else's).
func (db *DB) FindPrivacyRequests(ctx context.Context) ([]*phr.PrivacyRequest, error) {
	var out []*phr.PrivacyRequest
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text, user_id::text, kind, received_at, due_at, completed_at
			FROM privacy_requests ORDER BY received_at DESC, id DESC LIMIT 1000`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanPrivacyRequest)
		return err
	})
	return out, err
}

// FindPrivacyRequestsForAdmin lists every user's requests by due date, open ones only
// unless f.All. Only an admin with MFA gets an answer (EFORBIDDEN otherwise); the check
// runs in the database, in admin_list_privacy_requests, which returns no PHI.
func (db *DB) FindPrivacyRequestsForAdmin(ctx context.Context, f phr.PrivacyRequestFilter) ([]*phr.PrivacyRequest, string, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	var after *string
	if f.Cursor != "" {
		if uuid.Validate(f.Cursor) != nil {
			return nil, "", phr.FieldErrorf(phr.EINVALID, "cursor", "is not a valid cursor")
		}
		after = &f.Cursor
	}
	var out []*phr.PrivacyRequest
	err = db.asAdmin(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text, user_id::text, kind, received_at, due_at, completed_at
			FROM admin_list_privacy_requests($1, $2, $3)`, !f.All, after, limit+1)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanPrivacyRequest)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

func scanPrivacyRequest(r pgx.CollectableRow) (*phr.PrivacyRequest, error) {
	p := &phr.PrivacyRequest{}
	var completed *time.Time
	if err := r.Scan(&p.ID, &p.UserID, &p.Kind, &p.ReceivedAt, &p.DueAt, &completed); err != nil {
		return nil, err
	}
	p.ReceivedAt, p.DueAt = p.ReceivedAt.UTC(), p.DueAt.UTC()
	if completed != nil {
		p.CompletedAt = completed.UTC()
	}
	return p, nil
}

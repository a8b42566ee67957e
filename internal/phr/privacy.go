package phr

import (
	"context"
	"slices"
	"time"
)

// Purposes a user may consent to (GDPR Art. 6(1)(a), 7). None is granted until the user
// grants it, and a withdrawal takes effect with the next call to HasConsent.
const (
	ConsentAssistant     = "assistant"      // explanations of one's own data by the assistant
	ConsentResearch      = "research"       // use of one's data in research
	ConsentProductEmails = "product_emails" // mail about the product beyond the account's own
)

// ConsentPurposes are every purpose of consent, in the order answers list them.
var ConsentPurposes = []string{ConsentAssistant, ConsentResearch, ConsentProductEmails}

// Purposes a user may object to (GDPR Art. 21).
const (
	ObjectionAnalytics        = "analytics"
	ObjectionMarketing        = "marketing"
	ObjectionResearch         = "research"
	ObjectionThirdPartyExport = "third_party_export"
)

// ObjectionPurposes are every purpose of objection, in the order answers list them.
var ObjectionPurposes = []string{ObjectionAnalytics, ObjectionMarketing, ObjectionResearch, ObjectionThirdPartyExport}

// Kinds of privacy choice kept in the append-only history.
const (
	ChoiceConsent     = "consent"
	ChoiceObjection   = "objection"
	ChoiceRestriction = "restriction"
	ChoiceDoNotSell   = "do_not_sell"
)

// Kinds of privacy request, each logged with its deadline.
const (
	RequestAccess        = "access"
	RequestExport        = "export"
	RequestErasure       = "erasure"
	RequestRectification = "rectification"
	RequestRestriction   = "restriction"
	RequestObjection     = "objection"
	RequestDoNotSell     = "do_not_sell"
)

// PrivacyRequestKinds are every kind of privacy request.
var PrivacyRequestKinds = []string{RequestAccess, RequestExport, RequestErasure, RequestRectification,
	RequestRestriction, RequestObjection, RequestDoNotSell}

// IsConsentPurpose, IsObjectionPurpose and IsPrivacyRequestKind check a client's value.
func IsConsentPurpose(p string) bool     { return slices.Contains(ConsentPurposes, p) }
func IsObjectionPurpose(p string) bool   { return slices.Contains(ObjectionPurposes, p) }
func IsPrivacyRequestKind(k string) bool { return slices.Contains(PrivacyRequestKinds, k) }

// PrivacyRequestDueAt is when a request received at t must be answered: one month later
// (GDPR Art. 12(3)), on the same day of the next month in UTC, or on that month's last day
// when it has no such day (Regulation 1182/71 Art. 3(2)(c)): 31 January → 28/29 February.
func PrivacyRequestDueAt(t time.Time) time.Time {
	t = t.UTC()
	y, m, d := t.Date()
	last := time.Date(y, m+2, 0, 0, 0, 0, 0, time.UTC).Day() // the last day of the next month
	if d > last {
		d = last
	}
	return time.Date(y, m+1, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// PrivacyChoice is one entry of a user's append-only history of privacy choices. Value is
// granted for a consent, objected for an objection, restricted for a restriction and
// opted out for do-not-sell. Purpose is empty for restriction and do-not-sell.
type PrivacyChoice struct {
	ID      int64
	Kind    string
	Purpose string
	Value   bool
	At      time.Time
}

// PrivacySettings is the current state of a user's privacy choices: the latest choice per
// purpose. Every purpose is present; one never chosen is false.
type PrivacySettings struct {
	Restricted   bool
	RestrictedAt time.Time // zero when not restricted
	DoNotSell    bool
	Consents     map[string]bool
	Objections   map[string]bool
	// ChangedAt is when each consent or objection purpose was last chosen, keyed
	// "consent/assistant", "objection/marketing"; absent when never chosen.
	ChangedAt map[string]time.Time
}

// Kinds of processing beyond storing and showing the user their own data, each gated by
// Allows. A feature that processes a user's data for one of them asks first, every time.
const (
	ProcessAssistant        = "assistant"          // the assistant explains the user's data
	ProcessResearch         = "research"           // the data goes into research
	ProcessProductEmails    = "product_emails"     // mail about the product (marketing)
	ProcessAnalytics        = "analytics"          // usage analytics
	ProcessThirdPartyExport = "third_party_export" // data sent to a third party (sharing)
)

// Processings are every kind of processing Allows knows, in the order answers list them.
var Processings = []string{ProcessAssistant, ProcessResearch, ProcessProductEmails, ProcessAnalytics, ProcessThirdPartyExport}

// Allows reports whether the user's choices permit processing of kind: never while
// processing is restricted (GDPR Art. 18: storage only); purposes that need consent need a
// granted one; an objection (Art. 21) stops its purpose; do-not-sell (CCPA) stops any
// sharing with a third party. An unknown kind is not allowed.
func (s *PrivacySettings) Allows(kind string) bool {
	if s.Restricted {
		return false
	}
	switch kind {
	case ProcessAssistant:
		return s.Consents[ConsentAssistant]
	case ProcessResearch:
		return s.Consents[ConsentResearch] && !s.Objections[ObjectionResearch]
	case ProcessProductEmails:
		return s.Consents[ConsentProductEmails] && !s.Objections[ObjectionMarketing]
	case ProcessAnalytics:
		return !s.Objections[ObjectionAnalytics]
	case ProcessThirdPartyExport:
		return !s.Objections[ObjectionThirdPartyExport] && !s.DoNotSell
	}
	return false
}

// PrivacyRequest is one entry of the deadline log. UserID may name an erased account.
type PrivacyRequest struct {
	ID          string
	UserID      string
	Kind        string
	ReceivedAt  time.Time
	DueAt       time.Time
	CompletedAt time.Time // zero while open
}

// PrivacyRequestFilter selects the admin's listing.
type PrivacyRequestFilter struct {
	All    bool   // completed ones too; otherwise only open ones
	Cursor string // the id of the last request of the previous page
	Limit  int    // 1..100; 0 means the default
}

// PrivacyService keeps a user's privacy choices and the deadline log of their requests.
// Every method but FindPrivacyRequestsForAdmin acts on the user in the context (RLS).
type PrivacyService interface {
	// FindPrivacySettings returns the user's current choices.
	FindPrivacySettings(ctx context.Context) (*PrivacySettings, error)
	// FindPrivacyChoices returns the user's history of one kind of choice (empty kind: all
	// kinds), newest first, a page at a time: cursor is the next_cursor of the page before.
	FindPrivacyChoices(ctx context.Context, kind, cursor string, limit int) ([]*PrivacyChoice, string, error)
	// SetConsent appends a grant or withdrawal; EINVALID for an unknown purpose.
	SetConsent(ctx context.Context, purpose string, granted bool) error
	// HasConsent reports whether the user's latest choice for purpose grants it and
	// processing is not restricted. EINVALID for an unknown purpose.
	HasConsent(ctx context.Context, purpose string) (bool, error)
	// SetObjection appends an objection or its withdrawal and logs a completed request;
	// EINVALID for an unknown purpose.
	SetObjection(ctx context.Context, purpose string, objected bool) error
	// SetRestricted restricts processing to storage, or lifts the restriction, and logs a
	// completed request.
	SetRestricted(ctx context.Context, restricted bool) error
	// IsRestricted reports whether the user has restricted processing.
	IsRestricted(ctx context.Context) (bool, error)
	// SetDoNotSell records the CCPA opt-out of sale and sharing (the service sells nothing)
	// and logs a completed request.
	SetDoNotSell(ctx context.Context, doNotSell bool) error
	// RecordPrivacyRequest logs an open request of kind received now, due one month later
	// (PrivacyRequestDueAt). EINVALID for an unknown kind.
	RecordPrivacyRequest(ctx context.Context, kind string) (*PrivacyRequest, error)
	// CompletePrivacyRequest marks the user's request id answered, once; ENOTFOUND for
	// another user's or an unknown id, ECONFLICT when it was already completed.
	CompletePrivacyRequest(ctx context.Context, id string) error
	// FindPrivacyRequests lists the user's own requests, newest first.
	FindPrivacyRequests(ctx context.Context) ([]*PrivacyRequest, error)
	// FindPrivacyRequestsForAdmin lists every user's requests by due date, without PHI.
	// Only an admin with MFA gets an answer (EFORBIDDEN otherwise; the database checks).
	FindPrivacyRequestsForAdmin(ctx context.Context, f PrivacyRequestFilter) ([]*PrivacyRequest, string, error)
}

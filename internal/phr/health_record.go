package phr

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// Kinds of health record.
const (
	KindCondition        = "condition"
	KindMedication       = "medication"
	KindImmunization     = "immunization"
	KindProcedure        = "procedure"
	KindAllergy          = "allergy"
	KindCarePlan         = "care_plan"
	KindDiagnosticReport = "diagnostic_report"
	KindNote             = "note"
)

// HealthRecordKinds lists every kind a record may have.
var HealthRecordKinds = []string{KindCondition, KindMedication, KindImmunization, KindProcedure,
	KindAllergy, KindCarePlan, KindDiagnosticReport, KindNote}

// ValidHealthRecordKind reports whether kind is one of HealthRecordKinds.
func ValidHealthRecordKind(kind string) bool {
	for _, k := range HealthRecordKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// HealthRecord is one clinical record of a user: a condition, a medication, a note...
// Title and Content are PHI and stored encrypted; Kind and RecordedAt stay in clear.
type HealthRecord struct {
	ID         string
	UserID     string
	Kind       string
	Title      string
	Content    json.RawMessage // a JSON value
	RecordedAt time.Time
	Source     string // "manual", "fhir"
	SourceID   string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// LogValue keeps PHI out of logs.
func (r HealthRecord) LogValue() slog.Value { return slog.StringValue("health_record:" + r.ID) }

// HealthRecordFilter selects and pages a user's records, newest first.
type HealthRecordFilter struct {
	Kind   string
	Cursor string
	Limit  int
}

// HealthRecordUpdate holds the fields a PATCH may change; nil means unchanged.
type HealthRecordUpdate struct {
	Kind       *string
	Title      *string
	Content    json.RawMessage
	RecordedAt *time.Time
}

// HealthRecordService stores the health records of the user in the context. Every method
// returns ENOTFOUND for an unknown id and for another user's record alike. An update
// appends the values it replaced, and a delete the record's last values, to the user's
// history (HistoryService).
type HealthRecordService interface {
	FindHealthRecordByID(ctx context.Context, id string) (*HealthRecord, error)
	FindHealthRecords(ctx context.Context, f HealthRecordFilter) ([]*HealthRecord, string, error)
	CreateHealthRecord(ctx context.Context, r *HealthRecord) error
	UpdateHealthRecord(ctx context.Context, id string, upd HealthRecordUpdate) (*HealthRecord, error)
	DeleteHealthRecord(ctx context.Context, id string) error
}

package phr

import (
	"context"
	"log/slog"
	"time"
)

// TestResult is one laboratory result. Code (LOINC), Name, Value, Unit, ReferenceRange and
// Notes are PHI and stored encrypted; EffectiveAt stays in clear for sorting.
type TestResult struct {
	ID         string
	UserID     string
	CodeSystem string // e.g. http://loinc.org
	Code       string
	Name       string
	Value      string // the number as written by the lab, or the coded value's display
	ValueType  string // "quantity", "coded", "string"
	Unit       string
	// ReferenceRange is the lab's range when the source carries one ("" otherwise).
	ReferenceRange string
	Notes          string
	EffectiveAt    time.Time
	Source         string // "fhir", "manual"
	SourceID       string // the source's identity of the result (FHIR Observation id)
	CreatedAt      time.Time
}

// LogValue keeps PHI out of logs.
func (r TestResult) LogValue() slog.Value { return slog.StringValue("test_result:" + r.ID) }

// TestResultFilter selects and pages a user's test results, newest first.
type TestResultFilter struct {
	Code   string // optional: only results with this code
	Cursor string // opaque, from a previous page
	Limit  int
}

// TestResultUpdate holds the fields of a result its user may correct; nil means unchanged.
// The code, its system and the value type stay as the lab reported them.
type TestResultUpdate struct {
	Name           *string
	Value          *string
	Unit           *string
	ReferenceRange *string
	Notes          *string
	EffectiveAt    *time.Time
}

// TestResultService stores the test results of the user in the context.
type TestResultService interface {
	// FindTestResultByID returns ENOTFOUND for an unknown id and for another user's result.
	FindTestResultByID(ctx context.Context, id string) (*TestResult, error)
	// FindTestResults returns one page and the cursor of the next ("" at the end).
	FindTestResults(ctx context.Context, f TestResultFilter) ([]*TestResult, string, error)
	// UpdateTestResult corrects the given fields and appends the values they replaced to
	// the user's history. ENOTFOUND for an unknown id and for another user's result;
	// EINVALID for a value the result cannot hold.
	UpdateTestResult(ctx context.Context, id string, upd TestResultUpdate) (*TestResult, error)
	// DeleteTestResult removes the result and appends its last values to the history;
	// ENOTFOUND for an unknown id and for another user's result.
	DeleteTestResult(ctx context.Context, id string) error
}

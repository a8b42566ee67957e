package phr

import "context"

// ImportBatch is what a source (a FHIR bundle) yields for one user: results and records
// ready to store, plus what was left out and why.
type ImportBatch struct {
	Source        string // "fhir"
	TestResults   []*TestResult
	HealthRecords []*HealthRecord
	Skipped       []ImportSkip
}

// ImportSkip counts the source resources of one type that were left out for one reason.
// Reason is safe to show: it names the rule, never the resource's clinical content.
type ImportSkip struct {
	ResourceType string
	Reason       string
	Count        int
}

// ImportResult reports what an import stored.
type ImportResult struct {
	TestResultsCreated   int
	HealthRecordsCreated int
	// Updated counts results and records an earlier import stored that the source has
	// changed since (an amended lab result): they now hold the new content.
	Updated int
	// Unchanged counts results and records that an earlier import had already stored as they are.
	Unchanged int
}

// ImportService stores a batch for the user in the context, all or nothing, idempotent
// on each item's (Source, SourceID): importing the same batch again changes nothing, and an
// item whose content changed at the source is updated in place.
type ImportService interface {
	Import(ctx context.Context, b *ImportBatch) (*ImportResult, error)
}

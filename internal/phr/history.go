package phr

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"time"
)

// What a history entry is about (GDPR Art. 16: the user sees what was corrected, and how
// it read before).
const (
	HistoryProfile      = "profile"
	HistoryHealthRecord = "health_record"
	HistoryTestResult   = "test_result"
)

// HistoryEntities are every kind of history entry, in the order answers list them.
var HistoryEntities = []string{HistoryProfile, HistoryHealthRecord, HistoryTestResult}

// IsHistoryEntity checks a client's value.
func IsHistoryEntity(e string) bool { return slices.Contains(HistoryEntities, e) }

// What happened to the entity.
const (
	ChangeUpdate = "update"
	ChangeDelete = "delete"
)

// HistoryEntry is one change of a user's profile, health record or test result, with the
// values it replaced: for an update the fields that changed, for a delete every field the
// record had. Previous is PHI (stored encrypted); LogValue shows only the id.
type HistoryEntry struct {
	ID       string
	Entity   string // HistoryProfile, HistoryHealthRecord or HistoryTestResult
	EntityID string // the user for the profile, else the record or result (which may be gone)
	Action   string // ChangeUpdate or ChangeDelete
	// Previous maps each field (as named in the API: "full_name", "title", "value"...) to
	// the JSON value it had before the change.
	Previous  map[string]json.RawMessage
	ChangedAt time.Time
}

// LogValue keeps PHI out of logs.
func (e HistoryEntry) LogValue() slog.Value { return slog.StringValue("history:" + e.ID) }

// HistoryFilter selects and pages a user's history, newest first.
type HistoryFilter struct {
	Entity   string // "" for every entity
	EntityID string // "" for every record; with Entity set, one record or result
	Cursor   string // the next cursor of the page before; "" for the first
	Limit    int    // 1..100; 0 means the default
}

// HistoryService reads the append-only history of the user in the context. Entries are
// appended by the services that change the data (profile, health records, test results),
// in the same transaction as the change; nobody may change or remove one, and an erasure
// removes them all. Bad cursors, limits and entities are EINVALID.
type HistoryService interface {
	// FindHistory returns one page of every history entry of the user, newest first, and
	// the cursor of the next page ("" at the end): what an export walks.
	FindHistory(ctx context.Context, cursor string, limit int) ([]*HistoryEntry, string, error)
	// FindHistoryEntries returns one page of the entries f selects. When f names one
	// health record or test result, ENOTFOUND unless it is the user's now or was (a
	// deleted record's history stays readable); another user's id is ENOTFOUND alike.
	FindHistoryEntries(ctx context.Context, f HistoryFilter) ([]*HistoryEntry, string, error)
}

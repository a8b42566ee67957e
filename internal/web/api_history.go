package web

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// The history of corrections (GDPR Art. 16): every change of the profile, a health record
// or a test result keeps the values it replaced, and the user can read them. The services
// that make the changes append the entries; these handlers only read.

// historyEntryView is one entry of the history, as the API and the export show it.
type historyEntryView struct {
	ID       string `json:"id"`
	Entity   string `json:"entity"`
	EntityID string `json:"entity_id"`
	Action   string `json:"action"`
	// Previous maps each field that changed (every field, for a delete) to its value before.
	Previous  map[string]json.RawMessage `json:"previous"`
	ChangedAt time.Time                  `json:"changed_at"`
}

func toHistoryEntryView(e *phr.HistoryEntry) historyEntryView {
	prev := e.Previous
	if prev == nil {
		prev = map[string]json.RawMessage{}
	}
	return historyEntryView{ID: e.ID, Entity: e.Entity, EntityID: e.EntityID, Action: e.Action,
		Previous: prev, ChangedAt: e.ChangedAt.UTC()}
}

// history is the history service, or, when Options leaves it nil, the user service when
// that implements it (postgres.DB does).
func (s *Server) history() (phr.HistoryService, error) {
	if s.opts.History != nil {
		return s.opts.History, nil
	}
	if h, ok := s.opts.Users.(phr.HistoryService); ok {
		return h, nil
	}
	return nil, phr.Errorf(phr.EUNAVAILABLE, "The history of changes is not available on this server.")
}

// handleHistoryList is GET /api/me/history: the profile's history by default; ?entity=
// health_record or test_result lists every entry of that kind, those of deleted records
// included, and ?entity=all everything.
func (s *Server) handleHistoryList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entity := r.URL.Query().Get("entity")
		switch {
		case entity == "":
			entity = phr.HistoryProfile
		case entity == "all":
			entity = ""
		case !phr.IsHistoryEntity(entity):
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "entity", "is not a kind of history"))
			return
		}
		s.writeHistory(w, r, phr.HistoryFilter{Entity: entity})
	})
}

// handleEntityHistory is GET /api/health-records/{id}/history and its test-result twin: one
// record's history, also after it was deleted. Another user's id gets the 404 of an
// unknown one.
func (s *Server) handleEntityHistory(entity string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeHistory(w, r, phr.HistoryFilter{Entity: entity, EntityID: r.PathValue("id")})
	})
}

func (s *Server) writeHistory(w http.ResponseWriter, r *http.Request, f phr.HistoryFilter) {
	var err error
	if f.Limit, f.Cursor, err = pageQuery(r); err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	h, err := s.history()
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	items, next, err := h.FindHistoryEntries(r.Context(), f)
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	out := listJSON[historyEntryView]{Items: make([]historyEntryView, 0, len(items)), NextCursor: next}
	for _, e := range items {
		out.Items = append(out.Items, toHistoryEntryView(e))
	}
	writeJSON(w, http.StatusOK, out)
}

package web

import (
	"net/http"
	"strconv"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

type testResultJSON struct {
	ID             string     `json:"id"`
	CodeSystem     string     `json:"code_system"`
	Code           string     `json:"code"`
	Name           string     `json:"name"`
	Value          string     `json:"value"`
	ValueType      string     `json:"value_type"`
	Unit           string     `json:"unit"`
	ReferenceRange string     `json:"reference_range"`
	Notes          string     `json:"notes"`
	EffectiveAt    *time.Time `json:"effective_at"`
	Source         string     `json:"source"`
	CreatedAt      time.Time  `json:"created_at"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = stored(t)
	return &t
}

// stored is t as the database keeps it (UTC, microseconds), so an answer to a write shows
// the same time as a later read.
func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func toTestResultJSON(r *phr.TestResult) testResultJSON {
	return testResultJSON{ID: r.ID, CodeSystem: r.CodeSystem, Code: r.Code, Name: r.Name, Value: r.Value,
		ValueType: r.ValueType, Unit: r.Unit, ReferenceRange: r.ReferenceRange, Notes: r.Notes,
		EffectiveAt: timePtr(r.EffectiveAt), Source: r.Source, CreatedAt: stored(r.CreatedAt)}
}

// pageQuery reads limit and cursor; the contract has already checked their form.
func pageQuery(r *http.Request) (limit int, cursor string, err error) {
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 100 {
			return 0, "", phr.FieldErrorf(phr.EINVALID, "limit", "must be an integer between 1 and 100")
		}
	}
	return limit, q.Get("cursor"), nil
}

type listJSON[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func (s *Server) handleTestResultList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, cursor, err := pageQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		items, next, err := s.opts.TestResults.FindTestResults(r.Context(), phr.TestResultFilter{
			Code: r.URL.Query().Get("code"), Cursor: cursor, Limit: limit})
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		out := listJSON[testResultJSON]{Items: make([]testResultJSON, 0, len(items)), NextCursor: next}
		for _, it := range items {
			out.Items = append(out.Items, toTestResultJSON(it))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (s *Server) handleTestResultGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := s.opts.TestResults.FindTestResultByID(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, toTestResultJSON(res))
	})
}

// testResultInput is the body of PATCH: the fields a user may correct. The code, its
// system and the value type stay as the lab reported them.
type testResultInput struct {
	Name           *string    `json:"name"`
	Value          *string    `json:"value"`
	Unit           *string    `json:"unit"`
	ReferenceRange *string    `json:"reference_range"`
	Notes          *string    `json:"notes"`
	EffectiveAt    *time.Time `json:"effective_at"`
}

// handleTestResultUpdate corrects a result (GDPR Art. 16); the values it replaces go to
// the result's history.
func (s *Server) handleTestResultUpdate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in testResultInput
		if err := decodeJSON(bodyOf(r), &in); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if in.Name == nil && in.Value == nil && in.Unit == nil && in.ReferenceRange == nil && in.Notes == nil && in.EffectiveAt == nil {
			writeError(w, r, s.logger, phr.Errorf(phr.EINVALID, "Name at least one field to change."))
			return
		}
		if err := s.checkRecordTime("effective_at", in.EffectiveAt); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		upd := phr.TestResultUpdate{Name: in.Name, Value: in.Value, Unit: in.Unit, ReferenceRange: in.ReferenceRange, Notes: in.Notes}
		if in.EffectiveAt != nil {
			t := in.EffectiveAt.UTC()
			upd.EffectiveAt = &t
		}
		res, err := s.opts.TestResults.UpdateTestResult(r.Context(), r.PathValue("id"), upd)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, toTestResultJSON(res))
	})
}

// handleTestResultDelete removes a result; its last values stay in the history.
func (s *Server) handleTestResultDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.opts.TestResults.DeleteTestResult(r.Context(), r.PathValue("id")); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

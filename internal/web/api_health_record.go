package web

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

type healthRecordJSON struct {
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	Title      string          `json:"title"`
	Content    json.RawMessage `json:"content"`
	RecordedAt *time.Time      `json:"recorded_at"`
	Source     string          `json:"source"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

func toHealthRecordJSON(r *phr.HealthRecord) healthRecordJSON {
	return healthRecordJSON{ID: r.ID, Kind: r.Kind, Title: r.Title, Content: r.Content, RecordedAt: timePtr(r.RecordedAt),
		Source: r.Source, CreatedAt: stored(r.CreatedAt), UpdatedAt: stored(r.UpdatedAt)}
}

// healthRecordInput is the body of POST and PATCH. Content stays raw JSON: it is the
// user's, stored encrypted as given.
type healthRecordInput struct {
	Kind       *string         `json:"kind"`
	Title      *string         `json:"title"`
	Content    json.RawMessage `json:"content"`
	RecordedAt *time.Time      `json:"recorded_at"`
}

// checkRecordedAt refuses dates no record can have: before 1800 (the zero time among them,
// which would otherwise read as "no date") or more than a day in the future.
func (s *Server) checkRecordedAt(t *time.Time) error { return s.checkRecordTime("recorded_at", t) }

// checkRecordTime is checkRecordedAt for the date field of any record or result.
func (s *Server) checkRecordTime(field string, t *time.Time) error {
	if t == nil {
		return nil
	}
	if t.Year() < 1800 || t.After(s.now().Add(24*time.Hour)) {
		return phr.FieldErrorf(phr.EINVALID, field, "must be a date between 1800 and today")
	}
	return nil
}

func checkContent(c json.RawMessage) error {
	if c == nil {
		return nil
	}
	if string(c) == "null" {
		return phr.FieldErrorf(phr.EINVALID, "content", "must not be null")
	}
	// Strings anywhere inside must be clean text, like every other field.
	var v any
	if err := json.Unmarshal(c, &v); err != nil {
		return phr.FieldErrorf(phr.EINVALID, "content", "must be a JSON value")
	}
	return checkJSONText("content", v)
}

func checkJSONText(field string, v any) error {
	switch t := v.(type) {
	case string:
		return phr.CheckText(field, t, 100000, true)
	case []any:
		for _, e := range t {
			if err := checkJSONText(field, e); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, e := range t {
			if err := phr.CheckText(field, k, 200, false); err != nil {
				return err
			}
			if err := checkJSONText(field, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Server) handleHealthRecordList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, cursor, err := pageQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		items, next, err := s.opts.HealthRecords.FindHealthRecords(r.Context(), phr.HealthRecordFilter{
			Kind: r.URL.Query().Get("kind"), Cursor: cursor, Limit: limit})
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		out := listJSON[healthRecordJSON]{Items: make([]healthRecordJSON, 0, len(items)), NextCursor: next}
		for _, it := range items {
			out.Items = append(out.Items, toHealthRecordJSON(it))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (s *Server) handleHealthRecordGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, err := s.opts.HealthRecords.FindHealthRecordByID(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, toHealthRecordJSON(rec))
	})
}

func (s *Server) handleHealthRecordCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in healthRecordInput
		if err := decodeJSON(bodyOf(r), &in); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		switch {
		case in.Kind == nil:
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "kind", "is required"))
			return
		case in.Title == nil:
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "title", "is required"))
			return
		case in.Content == nil:
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "content", "is required"))
			return
		}
		if err := checkContent(in.Content); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.checkRecordedAt(in.RecordedAt); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		rec := &phr.HealthRecord{Kind: *in.Kind, Title: *in.Title, Content: in.Content}
		if in.RecordedAt != nil {
			rec.RecordedAt = in.RecordedAt.UTC()
		}
		if err := s.opts.HealthRecords.CreateHealthRecord(r.Context(), rec); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		infoFrom(r.Context()).resourceID = rec.ID
		w.Header().Set("Location", "/api/health-records/"+rec.ID)
		writeJSON(w, http.StatusCreated, toHealthRecordJSON(rec))
	})
}

func (s *Server) handleHealthRecordUpdate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in healthRecordInput
		if err := decodeJSON(bodyOf(r), &in); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if in.Kind == nil && in.Title == nil && in.Content == nil && in.RecordedAt == nil {
			writeError(w, r, s.logger, phr.Errorf(phr.EINVALID, "Name at least one field to change."))
			return
		}
		if err := checkContent(in.Content); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.checkRecordedAt(in.RecordedAt); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		upd := phr.HealthRecordUpdate{Kind: in.Kind, Title: in.Title, Content: in.Content}
		if in.RecordedAt != nil {
			t := in.RecordedAt.UTC()
			upd.RecordedAt = &t
		}
		rec, err := s.opts.HealthRecords.UpdateHealthRecord(r.Context(), r.PathValue("id"), upd)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, toHealthRecordJSON(rec))
	})
}

func (s *Server) handleHealthRecordDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.opts.HealthRecords.DeleteHealthRecord(r.Context(), r.PathValue("id")); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

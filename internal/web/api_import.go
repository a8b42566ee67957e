package web

import (
	"net/http"
)

type importSkipJSON struct {
	ResourceType string `json:"resource_type"`
	Reason       string `json:"reason"`
	Count        int    `json:"count"`
}

// handleImportFHIR imports the user's own FHIR bundle: all of it or, when it fails
// validation or storage, nothing.
func (s *Server) handleImportFHIR() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		batch, err := s.opts.ParseFHIR(bodyOf(r))
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		res, err := s.opts.Imports.Import(r.Context(), batch)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		skipped := make([]importSkipJSON, 0, len(batch.Skipped))
		for _, sk := range batch.Skipped {
			skipped = append(skipped, importSkipJSON{ResourceType: sk.ResourceType, Reason: sk.Reason, Count: sk.Count})
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"test_results_created":   res.TestResultsCreated,
			"health_records_created": res.HealthRecordsCreated,
			"updated":                res.Updated,
			"unchanged":              res.Unchanged,
			"skipped":                skipped,
		})
	})
}

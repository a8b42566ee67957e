package web

import (
	"archive/zip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/document"
	"github.com/vitalnexa/vitalnexa/internal/fhir"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// exportPage is how many items the export reads at a time: it never holds more.
const exportPage = 100

// handleExport is the right of access and portability (GDPR Art. 15 and 20, CCPA right to
// know): everything the service holds about the signed-in user, decrypted, as one JSON
// document (or a FHIR R4 Bundle with ?format=fhir), and with ?include=files as a ZIP that
// also holds the documents. It is streamed: written page by page as it is read, so a large
// account never sits in memory. A failure before the first byte is a clean error; after
// it the connection is cut, so a truncated export cannot pass for a whole one.
func (s *Server) handleExport() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		q := r.URL.Query()
		format, include := q.Get("format"), q.Get("include")
		if format == "" {
			format = "json"
		}
		if format != "json" && format != "fhir" {
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "format", "must be json or fhir"))
			return
		}
		if include != "" && include != "files" {
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "include", "must be files"))
			return
		}
		userID := phr.UserIDFromContext(ctx)
		u, err := s.opts.Users.FindUserByID(ctx, userID)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		// The request and its answer go in the log of privacy requests (and their deadlines).
		if err := s.recordAnsweredRequest(ctx, phr.RequestExport); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.securityEvent(ctx, "privacy.export", userID)
		name := "vitalnexa-export." + map[string]string{"json": "json", "fhir": "fhir.json"}[format]
		write := func(out io.Writer) error {
			if format == "fhir" {
				return s.writeFHIRExport(ctx, out, u)
			}
			return s.writeJSONExport(ctx, out, u)
		}
		h := w.Header()
		if include == "files" {
			h.Set("Content-Type", "application/zip")
			h.Set("Content-Disposition", `attachment; filename="vitalnexa-export.zip"`)
		} else {
			h.Set("Content-Type", map[string]string{"json": "application/json", "fhir": "application/fhir+json"}[format])
			h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		}
		out, err := streamResponse(w)
		if err != nil {
			return // nothing was sent; the middleware answers
		}
		if include == "files" {
			err = s.writeZipExport(ctx, out, name, write)
		} else {
			err = write(out)
		}
		if err != nil {
			s.logger.ErrorContext(ctx, "export cut short", "request_id", phr.RequestIDFromContext(ctx), "err", err.Error())
			abortStream()
		}
	})
}

// writeZipExport writes the export document and every file of the user into one ZIP.
func (s *Server) writeZipExport(ctx context.Context, out io.Writer, name string, write func(io.Writer) error) error {
	z := zip.NewWriter(out)
	doc, err := z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: s.now().UTC()})
	if err != nil {
		return err
	}
	if err := write(doc); err != nil {
		return err
	}
	if s.opts.Files != nil {
		err := s.eachFile(ctx, func(f *phr.File) error {
			fw, err := z.CreateHeader(&zip.FileHeader{Name: zipFileName(f), Method: zip.Deflate, Modified: f.CreatedAt.UTC()})
			if err != nil {
				return err
			}
			return s.opts.Files.WriteFileContent(ctx, f.ID, fw)
		})
		if err != nil {
			return err
		}
	}
	return z.Close()
}

// zipFileName is files/<id>-<name> with the name reduced to one safe path element: a
// stored name is user input and must not climb out of the archive's folder.
func zipFileName(f *phr.File) string {
	base := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`/\:*?"<>|`, r) {
			return '_'
		}
		return r
	}, path.Base("/"+document.DownloadName(f.Name, f.ContentType)))
	if base == "" || base == "." || base == ".." || base == "/" {
		base = "file"
	}
	return "files/" + f.ID + "-" + base
}

// jsonDoc writes one JSON object member by member.
type jsonDoc struct {
	w     io.Writer
	first bool
	err   error
}

func (d *jsonDoc) raw(s string) {
	if d.err == nil {
		_, d.err = io.WriteString(d.w, s)
	}
}

func (d *jsonDoc) value(v any) {
	if d.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		d.err = err
		return
	}
	_, d.err = d.w.Write(b)
}

// member writes "key": v.
func (d *jsonDoc) member(key string, v any) {
	d.key(key)
	d.value(v)
}

func (d *jsonDoc) key(key string) {
	if !d.first {
		d.raw(",\n")
	}
	d.first = false
	d.value(key)
	d.raw(":")
}

// list writes "key": [ … ] with the items that each calls emit with, page by page.
func (d *jsonDoc) list(key string, each func(emit func(v any)) error) {
	d.key(key)
	d.raw("[")
	n := 0
	err := each(func(v any) {
		if n > 0 {
			d.raw(",")
		}
		n++
		d.value(v)
	})
	if d.err == nil {
		d.err = err
	}
	d.raw("]")
}

// writeJSONExport writes the export as one JSON document.
func (s *Server) writeJSONExport(ctx context.Context, out io.Writer, u *phr.User) error {
	d := &jsonDoc{w: out, first: true}
	d.raw("{")
	d.member("format", "vitalnexa-export/1")
	d.member("exported_at", stored(s.now()))
	d.member("profile", map[string]any{"id": u.ID, "email": u.Email, "full_name": u.FullName, "date_of_birth": u.DateOfBirth,
		"email_verified": u.EmailVerified, "created_at": stored(u.CreatedAt)})
	d.list("test_results", func(emit func(any)) error {
		return s.eachTestResult(ctx, func(x *phr.TestResult) error { emit(toTestResultJSON(x)); return nil })
	})
	d.list("health_records", func(emit func(any)) error {
		return s.eachHealthRecord(ctx, func(x *phr.HealthRecord) error { emit(toHealthRecordJSON(x)); return nil })
	})
	d.list("files", func(emit func(any)) error {
		if s.opts.Files == nil {
			return nil
		}
		return s.eachFile(ctx, func(f *phr.File) error { emit(toFileJSON(f)); return nil })
	})
	d.list("change_history", func(emit func(any)) error {
		h, err := s.history()
		if err != nil {
			return nil // a server without the history store has none to give
		}
		return eachPage(func(cursor string) ([]*phr.HistoryEntry, string, error) {
			return h.FindHistory(ctx, cursor, exportPage)
		},
			func(x *phr.HistoryEntry) error { emit(toHistoryEntryView(x)); return nil })
	})
	s.writePrivacyExport(ctx, d)
	d.list("sessions", func(emit func(any)) error {
		sessions, err := s.opts.Sessions.FindSessions(ctx)
		for _, x := range sessions {
			emit(sessionView{ID: x.ID, Device: x.Device, CreatedAt: x.CreatedAt.UTC(),
				LastSeenAt: x.LastSeenAt.UTC(), ExpiresAt: x.ExpiresAt.UTC(), Current: x.ID == sessionFrom(ctx).ID})
		}
		return err
	})
	d.list("access_history", func(emit func(any)) error {
		h, err := s.accessHistory()
		if err != nil {
			return nil // a server without the trail reader has no history to give
		}
		return eachPage(func(cursor string) ([]*phr.AuditRecord, string, error) {
			return h.FindAccessHistory(ctx, cursor, exportPage)
		},
			func(a *phr.AuditRecord) error { emit(toAccessHistoryView(a)); return nil })
	})
	d.raw("}\n")
	return d.err
}

// writeFHIRExport writes the user's health data as a FHIR R4 Bundle (type collection): the
// Patient from the profile, every test result as a laboratory Observation and every health
// record as the resource it came as (or one of its kind), which an import reads back.
func (s *Server) writeFHIRExport(ctx context.Context, out io.Writer, u *phr.User) error {
	b, err := fhir.NewBundleWriter(out, fhir.PatientOf(u), s.now())
	if err != nil {
		return err
	}
	if err := s.eachTestResult(ctx, b.TestResult); err != nil {
		return err
	}
	if err := s.eachHealthRecord(ctx, b.HealthRecord); err != nil {
		return err
	}
	return b.Close()
}

// writePrivacyExport writes the user's privacy choices, their history and their requests.
func (s *Server) writePrivacyExport(ctx context.Context, d *jsonDoc) {
	p, err := s.privacy()
	if err != nil {
		return
	}
	st, err := p.FindPrivacySettings(ctx)
	if err != nil {
		d.err = err
		return
	}
	d.member("privacy", toPrivacyView(st))
	d.list("privacy_choices", func(emit func(any)) error {
		return eachPage(func(cursor string) ([]*phr.PrivacyChoice, string, error) {
			return p.FindPrivacyChoices(ctx, "", cursor, exportPage)
		},
			func(c *phr.PrivacyChoice) error {
				emit(privacyChoiceView{Kind: c.Kind, Purpose: c.Purpose, Value: c.Value, At: c.At.UTC()})
				return nil
			})
	})
	d.list("privacy_requests", func(emit func(any)) error {
		reqs, err := p.FindPrivacyRequests(ctx)
		for _, x := range reqs {
			emit(toPrivacyRequestView(x, false))
		}
		return err
	})
}

type privacyChoiceView struct {
	Kind    string    `json:"kind"`
	Purpose string    `json:"purpose,omitempty"`
	Value   bool      `json:"value"`
	At      time.Time `json:"at"`
}

// eachTestResult calls fn with every test result of the user, a page at a time.
func (s *Server) eachTestResult(ctx context.Context, fn func(*phr.TestResult) error) error {
	return eachPage(func(cursor string) ([]*phr.TestResult, string, error) {
		return s.opts.TestResults.FindTestResults(ctx, phr.TestResultFilter{Cursor: cursor, Limit: exportPage})
	}, fn)
}

// eachHealthRecord calls fn with every health record of the user, a page at a time.
func (s *Server) eachHealthRecord(ctx context.Context, fn func(*phr.HealthRecord) error) error {
	return eachPage(func(cursor string) ([]*phr.HealthRecord, string, error) {
		return s.opts.HealthRecords.FindHealthRecords(ctx, phr.HealthRecordFilter{Cursor: cursor, Limit: exportPage})
	}, fn)
}

// eachFile calls fn with every file of the user, a page at a time.
func (s *Server) eachFile(ctx context.Context, fn func(*phr.File) error) error {
	return eachPage(func(cursor string) ([]*phr.File, string, error) {
		return s.opts.Files.FindFiles(ctx, phr.FileFilter{Cursor: cursor, Limit: exportPage})
	}, fn)
}

// eachPage calls fn with every item of a cursor-paginated list, reading a page at a time.
func eachPage[T any](page func(cursor string) ([]T, string, error), fn func(T) error) error {
	for cursor := ""; ; {
		items, next, err := page(cursor)
		if err != nil {
			return err
		}
		for _, x := range items {
			if err := fn(x); err != nil {
				return err
			}
		}
		if cursor = next; cursor == "" {
			return nil
		}
	}
}

// recordAnsweredRequest logs a privacy request of kind that is answered at once.
func (s *Server) recordAnsweredRequest(ctx context.Context, kind string) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	req, err := p.RecordPrivacyRequest(ctx, kind)
	if err != nil {
		return err
	}
	return p.CompletePrivacyRequest(ctx, req.ID)
}

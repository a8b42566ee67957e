package web

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vitalnexa/vitalnexa/internal/document"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Codes the web layer answers documents with.
const codeUnprocessable = "unprocessable"

type fileJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	CreatedAt   time.Time `json:"created_at"`
}

func toFileJSON(f *phr.File) fileJSON {
	return fileJSON{ID: f.ID, Name: f.Name, ContentType: f.ContentType, Size: f.Size, CreatedAt: stored(f.CreatedAt)}
}

// handleFileUpload takes one file in the multipart field "file". Only what the bytes prove
// counts: the name and the declared type are hints that are never trusted.
func (s *Server) handleFileUpload() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, name, err := s.readUpload(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		kind, err := s.opts.CheckDocument(data)
		if phr.ErrorCode(err) == phr.EINVALID {
			// A PDF or text the service will not keep (active content, broken structure).
			err = &phr.Error{Code: codeUnprocessable, Message: phr.ErrorMessage(err), Field: "file"}
		}
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		ctx := r.Context()
		if s.opts.Scan != nil {
			if err := s.opts.Scan(ctx, data); err != nil {
				if phr.ErrorCode(err) == codeUnprocessable {
					s.securityEvent(ctx, "file.malware_found", phr.UserIDFromContext(ctx))
				}
				writeError(w, r, s.logger, err)
				return
			}
		}
		f := &phr.File{Name: name, ContentType: kind}
		if err := s.opts.Files.CreateFile(ctx, f, bytes.NewReader(data)); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		infoFrom(ctx).resourceID = f.ID
		w.Header().Set("Location", "/api/files/"+f.ID)
		writeJSON(w, http.StatusCreated, toFileJSON(f))
	})
}

// readUpload finds the one part named "file" in the multipart body, its bytes (at most
// MaxUploadBytes) and a clean version of its name.
func (s *Server) readUpload(r *http.Request) ([]byte, string, error) {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return nil, "", phr.Errorf(phr.EINVALID, "Send the file as multipart/form-data in the field \"file\".")
	}
	mr := multipart.NewReader(bytes.NewReader(bodyOf(r)), params["boundary"])
	var data []byte
	var name string
	found := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", phr.Errorf(phr.EINVALID, "The multipart body is malformed.")
		}
		if part.FormName() != "file" || found {
			return nil, "", phr.FieldErrorf(phr.EINVALID, "file", "Send exactly one file, in the field \"file\", and nothing else.")
		}
		found = true
		// The part is no longer than the body it is in, which is already in memory: one
		// buffer of that size (or of the limit and one byte), not one doubling its way there.
		size := min(int64(len(bodyOf(r))), s.opts.MaxUploadBytes+1)
		data, err = readAll(io.LimitReader(part, s.opts.MaxUploadBytes+1), size, size)
		if err != nil {
			return nil, "", phr.Errorf(phr.EINVALID, "The multipart body is malformed.")
		}
		if int64(len(data)) > s.opts.MaxUploadBytes {
			return nil, "", phr.Errorf(phr.ETOOLARGE, "Files may be at most %d MiB.", s.opts.MaxUploadBytes>>20)
		}
		name = cleanFileName(part.FileName())
	}
	if !found {
		return nil, "", phr.FieldErrorf(phr.EINVALID, "file", "Send the file in the field \"file\".")
	}
	return data, name, nil
}

// cleanFileName keeps a file name as a label only: valid UTF-8, no control characters or
// path, at most 200 characters. It is never used as a path.
func cleanFileName(n string) string {
	n = strings.ToValidUTF8(n, "")
	if i := strings.LastIndexAny(n, `/\`); i >= 0 {
		n = n[i+1:]
	}
	n = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) { // Cf: bidi overrides, zero-width marks
			return -1
		}
		return r
	}, n)
	n = strings.TrimSpace(n)
	if utf8.RuneCountInString(n) > 200 {
		n = string([]rune(n)[:200])
	}
	if n == "" {
		n = "document"
	}
	return n
}

func (s *Server) handleFileList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, cursor, err := pageQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		files, next, err := s.opts.Files.FindFiles(r.Context(), phr.FileFilter{Cursor: cursor, Limit: limit})
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		out := listJSON[fileJSON]{Items: make([]fileJSON, 0, len(files)), NextCursor: next}
		for _, f := range files {
			out.Items = append(out.Items, toFileJSON(f))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (s *Server) handleFileGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := s.opts.Files.FindFileByID(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, toFileJSON(f))
	})
}

// handleFileContent downloads a file as an attachment that no browser will render in the
// service's origin.
func (s *Server) handleFileContent() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		f, err := s.opts.Files.FindFileByID(ctx, r.PathValue("id"))
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		h := w.Header()
		ct := f.ContentType
		if ct == "text/plain" {
			ct += "; charset=utf-8"
		}
		h.Set("Content-Type", ct)
		h.Set("Content-Disposition", contentDisposition(document.DownloadName(f.Name, f.ContentType)))
		h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
		h.Set("Content-Length", fmt.Sprint(f.Size))
		// Chunk by chunk to the client: a file never sits whole in memory.
		out := &lazyStream{w: w}
		if err := s.opts.Files.WriteFileContent(ctx, f.ID, out); err != nil {
			for _, k := range []string{"Content-Type", "Content-Disposition", "Content-Length"} {
				h.Del(k)
			}
			out.fail(r, s.logger, err)
		}
	})
}

// contentDisposition is "attachment" with an ASCII fallback name and the UTF-8 name
// (RFC 6266), neither able to break out of the header.
func contentDisposition(name string) string {
	ascii := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == ';' {
			return '_'
		}
		return r
	}, name)
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, ascii, url.PathEscape(name))
}

func (s *Server) handleFileDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.opts.Files.DeleteFile(r.Context(), r.PathValue("id")); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

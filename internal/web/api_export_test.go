package web_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/fhir"
	"github.com/vitalnexa/vitalnexa/internal/fhir/fhirschema"
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

// listAll reads every item of a cursor-paginated list.
func (e *testEnv) listAll(path, token string) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for cursor := ""; ; {
		r := e.do("GET", path+"?limit=100&cursor="+url.QueryEscape(cursor), token, nil)
		if r.status != http.StatusOK {
			e.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		page := r.json(e.t)
		for _, it := range page["items"].([]any) {
			out = append(out, it.(map[string]any))
		}
		next, _ := page["next_cursor"].(string)
		if cursor = next; cursor == "" {
			return out
		}
	}
}

// userVisible is an item as its owner sees it, less what each account assigns itself
// (id, times of storage) and where it came from.
func userVisible(items []map[string]any) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		c := maps.Clone(it)
		for _, k := range []string{"id", "created_at", "updated_at", "source"} {
			delete(c, k)
		}
		b, _ := json.Marshal(c)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// The FHIR export of an account holding a Synthea patient's record and records of the
// user's own validates as FHIR R4 and imports into a fresh account with nothing lost.
func TestFHIRExportReimportsIntoAFreshAccount(t *testing.T) {
	t.Parallel()
	bundles, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "testdata", "fhir", "*.json"))
	if len(bundles) == 0 {
		t.Log("../shared/testdata/fhir is absent: the project's own small bundle only")
	}
	bundles = append(bundles, filepath.Join("..", "fhir", "testdata", "small_bundle.json"))
	for _, path := range bundles {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			e := MustEnv(t)
			ana := e.MustVerifiedUser("ana@example.com")
			if r := e.do("POST", "/api/imports/fhir", ana, data, "Content-Type", "application/fhir+json"); r.status != http.StatusOK {
				t.Fatalf("import: %d %s", r.status, r.body)
			}
			// Records of her own, and one she corrected.
			e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Dizzy after the new dose",
				"content": map[string]any{"text": "twice, mornings", "severity": 2}, "recorded_at": "2024-05-06T07:08:09Z"})
			e.do("POST", "/api/health-records", ana, map[string]any{"kind": "allergy", "title": "Cats", "content": "sneezing"})
			results := e.listAll("/api/test-results", ana)
			if len(results) > 0 {
				e.do("PATCH", "/api/test-results/"+results[0]["id"].(string), ana, map[string]any{"notes": "repeat in May"})
			}
			r, err := e.get("/api/me/export?format=fhir", ana)
			if err != nil || r.status != http.StatusOK || r.header.Get("Content-Type") != "application/fhir+json" {
				t.Fatalf("FHIR export: %d %v %s", r.status, err, r.body)
			}
			bob := e.MustVerifiedUser("bob@example.com")
			imp := e.do("POST", "/api/imports/fhir", bob, r.body, "Content-Type", "application/fhir+json")
			if imp.status != http.StatusOK {
				t.Fatalf("re-import: %d %s", imp.status, imp.body)
			}
			if sk := imp.json(t)["skipped"].([]any); len(sk) != 1 || sk[0].(map[string]any)["resource_type"] != "Patient" {
				t.Fatalf("re-import skipped %v, want the Patient only", sk)
			}
			for _, list := range []string{"/api/test-results", "/api/health-records"} {
				want, got := userVisible(e.listAll(list, ana)), userVisible(e.listAll(list, bob))
				if len(want) == 0 && list == "/api/health-records" {
					t.Fatal("nothing to compare")
				}
				if !slices.Equal(got, want) {
					for i := range min(len(got), len(want)) {
						if got[i] != want[i] {
							t.Fatalf("%s: %d items back of %d; first difference:\n got %.400s\nwant %.400s", list, len(got), len(want), got[i], want[i])
						}
					}
					t.Fatalf("%s: %d items back of %d", list, len(got), len(want))
				}
			}
			fhirschema.MustValid(t, fhir.R4ResourceTypes(), r.body)
		})
	}
}

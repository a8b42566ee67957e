package web_test

import (
	"net/http"
	"testing"
)

// smallBundle is a FHIR bundle of our own: one patient, two lab results (quantity and
// coded), a vital sign, a condition and an encounter.
const smallBundle = `{"resourceType":"Bundle","type":"collection","entry":[
 {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Zyxwer","given":["Quilla"]}]}},
 {"fullUrl":"urn:uuid:o1","resource":{"resourceType":"Observation","id":"o1","status":"final",
   "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
   "code":{"coding":[{"system":"http://loinc.org","code":"2339-0","display":"Glucose"}],"text":"Glucose"},
   "effectiveDateTime":"2020-05-01T08:00:00Z","valueQuantity":{"value":95.50,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}},
 {"fullUrl":"urn:uuid:o2","resource":{"resourceType":"Observation","id":"o2","status":"final",
   "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
   "code":{"coding":[{"system":"http://loinc.org","code":"5778-6","display":"Color of Urine"}]},
   "effectiveDateTime":"2020-05-01T08:00:00Z","valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"371244009","display":"Yellow"}]}}},
 {"fullUrl":"urn:uuid:o3","resource":{"resourceType":"Observation","id":"o3","status":"final",
   "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
   "code":{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body Height"}]},
   "effectiveDateTime":"2020-05-01T08:00:00Z","valueQuantity":{"value":180,"unit":"cm"}}},
 {"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Condition","id":"c1","code":{"text":"Hypertension"},"onsetDateTime":"2019-01-01"}},
 {"fullUrl":"urn:uuid:e1","resource":{"resourceType":"Encounter","id":"e1"}}
]}`

func TestImportFHIRBundle(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	r := e.do("POST", "/api/imports/fhir", ana, smallBundle, "Content-Type", "application/fhir+json")
	if r.status != http.StatusOK {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	res := r.json(t)
	if res["test_results_created"] != 2.0 || res["health_records_created"] != 1.0 || res["unchanged"] != 0.0 {
		t.Fatalf("import = %s", r.body)
	}
	skipped := map[string]float64{}
	for _, s := range res["skipped"].([]any) {
		m := s.(map[string]any)
		if m["reason"] == "" {
			t.Fatalf("a skip without a reason: %v", m)
		}
		skipped[m["resource_type"].(string)] += m["count"].(float64)
	}
	if skipped["Patient"] != 1 || skipped["Observation"] != 1 || skipped["Encounter"] != 1 {
		t.Fatalf("skipped = %v", skipped)
	}
	items := e.do("GET", "/api/test-results", ana, nil).json(t)["items"].([]any)
	byCode := map[string]map[string]any{}
	for _, it := range items {
		m := it.(map[string]any)
		byCode[m["code"].(string)] = m
	}
	if g := byCode["2339-0"]; g["name"] != "Glucose" || g["value"] != "95.50" || g["unit"] != "mg/dL" || g["effective_at"] != "2020-05-01T08:00:00Z" {
		t.Fatalf("glucose = %v", g)
	}
	if u := byCode["5778-6"]; u["value"] != "Yellow" || u["value_type"] != "coded" {
		t.Fatalf("urine colour = %v", u)
	}
	// Filter by code.
	if got := e.do("GET", "/api/test-results?code=2339-0", ana, nil).json(t)["items"].([]any); len(got) != 1 {
		t.Fatalf("filter by code = %d items, want 1", len(got))
	}
	// The same bundle again changes nothing.
	r = e.do("POST", "/api/imports/fhir", ana, smallBundle)
	if res := r.json(t); res["test_results_created"] != 0.0 || res["health_records_created"] != 0.0 || res["unchanged"] != 3.0 {
		t.Fatalf("second import = %s", r.body)
	}
}

func TestInvalidBundleStoresNothing(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	for name, body := range map[string]string{
		"not a bundle":                `{"resourceType":"Patient"}`,
		"value of the wrong type":     `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","id":"x","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},"valueQuantity":{"value":"ninety"}}}]}`,
		"entry without a resource":    `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1"}]}`,
		"valid entry, then a bad one": `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Condition","id":"c9","code":{"text":"Gout"}}},{"resource":{"resourceType":"Observation","id":"o9","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":"oops"}}]}`,
		"not JSON":                    `{"resourceType":"Bundle",`,
	} {
		r := e.do("POST", "/api/imports/fhir", ana, body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400 (%s)", name, r.status, r.body)
		}
		if r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", name, r.header.Get("Content-Type"))
		}
	}
	for _, path := range []string{"/api/test-results", "/api/health-records"} {
		if items := e.do("GET", path, ana, nil).json(t)["items"].([]any); len(items) != 0 {
			t.Fatalf("%s holds %d items after only invalid imports", path, len(items))
		}
	}
	r := e.do("POST", "/api/imports/fhir", ana, smallBundle, "Content-Type", "text/plain")
	if r.status != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain bundle: %d, want 415", r.status)
	}
}

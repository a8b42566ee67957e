package fhir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// marker stands for clinical content and names in the tests: no error message may quote it.
const marker = "Quenby"

func mustReadFile(tb testing.TB, path string) []byte {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// bundleOf wraps resources (JSON objects) in a collection bundle, one entry each.
func bundleOf(resources ...string) string {
	entries := make([]string, len(resources))
	for i, r := range resources {
		entries[i] = fmt.Sprintf(`{"fullUrl":"urn:uuid:00000000-0000-4000-8000-%012d","resource":%s}`, i+100, r)
	}
	return `{"resourceType":"Bundle","type":"collection","entry":[` + strings.Join(entries, ",") + `]}`
}

// labObs is a well-formed laboratory Observation with extra members spliced in.
func labObs(extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return `{"resourceType":"Observation","id":"lab-1","status":"final",` +
		`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"2823-3","display":"Potassium"}]}` + extra + `}`
}

func TestParseBundleFixture(t *testing.T) {
	t.Parallel()
	batch, err := ParseBundle(mustReadFile(t, filepath.Join("testdata", "small_bundle.json")), Options{})
	if err != nil {
		t.Fatalf("ParseBundle: %v", err)
	}
	if got, want := batch.Source, "fhir"; got != want {
		t.Fatalf("Source = %q, want %q", got, want)
	}
	wantResults := []*phr.TestResult{{
		CodeSystem:     "http://loinc.org",
		Code:           "2823-3",
		Name:           "Potassium",
		Value:          "5.30",
		ValueType:      "quantity",
		Unit:           "mmol/L",
		ReferenceRange: "3.5–5.1 mmol/L",
		Notes:          "Sample slightly haemolysed.\nRepeat advised.",
		EffectiveAt:    time.Date(2023, 3, 14, 7, 30, 0, 0, time.UTC),
		Source:         "fhir",
		SourceID:       "obs-potassium",
	}, {
		CodeSystem:  "http://loinc.org",
		Code:        "5767-9",
		Name:        "Appearance of Urine",
		Value:       "Cloudy urine (finding)",
		ValueType:   "coded",
		EffectiveAt: time.Date(2023, 3, 1, 0, 0, 0, 0, time.UTC),
		Source:      "fhir",
		SourceID:    "obs-urine-clarity",
	}}
	if got, want := len(batch.TestResults), len(wantResults); got != want {
		t.Fatalf("len(TestResults) = %d, want %d", got, want)
	}
	for i, want := range wantResults {
		if d := diffTestResult(batch.TestResults[i], want); d != "" {
			t.Fatalf("TestResults[%d]: %s", i, d)
		}
	}
	wantRecords := []*phr.HealthRecord{{
		Kind:  phr.KindCondition,
		Title: "Diabetes mellitus type 2",
		Content: json.RawMessage(`{"resourceType":"Condition","id":"cond-1","code":{"coding":[{"system":"http://snomed.info/sct",` +
			`"code":"44054006","display":"Diabetes mellitus type 2"}]},"subject":{"reference":"Patient/pat-1"},"recordedDate":"2019-06-02T10:00:00Z"}`),
		RecordedAt: time.Date(2019, 6, 2, 10, 0, 0, 0, time.UTC),
		Source:     "fhir",
		SourceID:   "cond-1",
	}}
	if got, want := len(batch.HealthRecords), len(wantRecords); got != want {
		t.Fatalf("len(HealthRecords) = %d, want %d", got, want)
	}
	for i, want := range wantRecords {
		if d := diffHealthRecord(batch.HealthRecords[i], want); d != "" {
			t.Fatalf("HealthRecords[%d]: %s", i, d)
		}
	}
	wantSkipped := []phr.ImportSkip{
		{ResourceType: "Encounter", Reason: ReasonNotImported, Count: 1},
		{ResourceType: "Observation", Reason: ReasonDuplicate, Count: 1},
		{ResourceType: "Observation", Reason: ReasonNoValue, Count: 1},
		{ResourceType: "Observation", Reason: ReasonNotLab, Count: 1},
		{ResourceType: "Observation", Reason: ReasonOtherPatient, Count: 1},
		{ResourceType: "Patient", Reason: ReasonPatient, Count: 1},
	}
	if got, want := fmt.Sprint(batch.Skipped), fmt.Sprint(wantSkipped); got != want {
		t.Fatalf("Skipped = %s\nwant      %s", got, want)
	}
}

func diffTestResult(got, want *phr.TestResult) string {
	g, w := *got, *want
	if !g.EffectiveAt.Equal(w.EffectiveAt) {
		return fmt.Sprintf("EffectiveAt = %v, want %v", g.EffectiveAt, w.EffectiveAt)
	}
	g.EffectiveAt, w.EffectiveAt = time.Time{}, time.Time{}
	if g != w {
		return fmt.Sprintf("got  %+v\nwant %+v", g, w)
	}
	return ""
}

func diffHealthRecord(got, want *phr.HealthRecord) string {
	switch {
	case got.Kind != want.Kind:
		return fmt.Sprintf("Kind = %q, want %q", got.Kind, want.Kind)
	case got.Title != want.Title:
		return fmt.Sprintf("Title = %q, want %q", got.Title, want.Title)
	case string(got.Content) != string(want.Content):
		return fmt.Sprintf("Content = %s\nwant      %s", got.Content, want.Content)
	case !got.RecordedAt.Equal(want.RecordedAt):
		return fmt.Sprintf("RecordedAt = %v, want %v", got.RecordedAt, want.RecordedAt)
	case got.Source != want.Source || got.SourceID != want.SourceID:
		return fmt.Sprintf("Source, SourceID = %q, %q, want %q, %q", got.Source, got.SourceID, want.Source, want.SourceID)
	case got.ID != "" || got.UserID != "":
		return "ID and UserID must be left to the store"
	}
	return ""
}

func TestParseBundleInvalid(t *testing.T) {
	t.Parallel()
	patient := `{"resourceType":"Patient","id":"p1","name":[{"given":["` + marker + `"]}]}`
	tests := []struct {
		name      string
		data      string
		opts      Options
		wantField string
	}{
		// Not JSON at all: a form post or a PDF sent to the import endpoint.
		{"not JSON", marker + " is not json", Options{}, ""},
		// A JSON array is not a resource.
		{"not an object", `[` + labObs("") + `]`, Options{}, ""},
		// A bare resource where a Bundle is expected.
		{"not a Bundle", labObs(`"valueString":"` + marker + `"`), Options{}, "/resourceType"},
		// Member names are case-sensitive: "ResourceType" must not pass for "resourceType".
		{"resourceType in other case", `{"ResourceType":"Bundle","type":"collection"}`, Options{}, "/resourceType"},
		// history bundles describe server actions, not a record.
		{"unknown bundle type", `{"resourceType":"Bundle","type":"history","entry":[]}`, Options{}, "/type"},
		{"bundle type not a string", `{"resourceType":"Bundle","type":["collection"]}`, Options{}, "/type"},
		// entry as an object instead of an array must not be silently read as empty.
		{"entry not an array", `{"resourceType":"Bundle","type":"collection","entry":{"resource":` + labObs("") + `}}`, Options{}, "/entry"},
		{"entry null", `{"resourceType":"Bundle","type":"collection","entry":null}`, Options{}, "/entry"},
		{"entry element not an object", `{"resourceType":"Bundle","type":"collection","entry":["` + marker + `"]}`, Options{}, "/entry/0"},
		// A DELETE entry, or a truncated export, has no resource.
		{"entry without resource", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1"}]}`, Options{}, "/entry/0/resource"},
		{"resource not an object", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":"` + marker + `"}]}`, Options{}, "/entry/0/resource"},
		{"resourceType not a string", bundleOf(`{"resourceType":7}`), Options{}, "/entry/0/resource/resourceType"},
		{"resourceType empty", bundleOf(`{"resourceType":""}`), Options{}, "/entry/0/resource/resourceType"},
		// A number sent as a string would lose the "number as written" guarantee.
		{"valueQuantity.value a string", bundleOf(labObs(`"valueQuantity":{"value":"5.30 ` + marker + `","unit":"mmol/L"}`)), Options{}, "/entry/0/resource/valueQuantity/value"},
		// JSON allows it, but a reader can hold 1e400 only as Infinity.
		{"valueQuantity.value beyond a float", bundleOf(labObs(`"valueQuantity":{"value":1e400,"unit":"mmol/L"}`)), Options{}, "/entry/0/resource/valueQuantity/value"},
		{"valueQuantity not an object", bundleOf(labObs(`"valueQuantity":5.3`)), Options{}, "/entry/0/resource/valueQuantity"},
		{"unit not a string", bundleOf(labObs(`"valueQuantity":{"value":5.3,"unit":7}`)), Options{}, "/entry/0/resource/valueQuantity/unit"},
		{"comparator not a FHIR code", bundleOf(labObs(`"valueQuantity":{"value":5.3,"comparator":"` + marker + `"}`)), Options{}, "/entry/0/resource/valueQuantity/comparator"},
		{"valueInteger with a fraction", bundleOf(labObs(`"valueInteger":1.5`)), Options{}, "/entry/0/resource/valueInteger"},
		{"two value[x]", bundleOf(labObs(`"valueString":"a","valueBoolean":true`)), Options{}, "/entry/0/resource"},
		{"code not an object", bundleOf(strings.Replace(labObs(""), `"code":{"coding":[{"system":"http://loinc.org","code":"2823-3","display":"Potassium"}]}`, `"code":"`+marker+`"`, 1)), Options{}, "/entry/0/resource/code"},
		{"code null", bundleOf(strings.Replace(labObs(""), `"code":{"coding":[{"system":"http://loinc.org","code":"2823-3","display":"Potassium"}]}`, `"code":null`, 1)), Options{}, "/entry/0/resource/code"},
		{"lab observation without code", bundleOf(strings.Replace(labObs(`"valueString":"x"`), `"code":{"coding":[{"system":"http://loinc.org","code":"2823-3","display":"Potassium"}]},`, ``, 1)), Options{}, "/entry/0/resource/code"},
		{"coding not an array", bundleOf(`{"resourceType":"Condition","id":"c1","code":{"coding":{"code":"1"}}}`), Options{}, "/entry/0/resource/code/coding"},
		{"display not a string", bundleOf(`{"resourceType":"Condition","id":"c1","code":{"coding":[{"code":"1","display":["` + marker + `"]}]}}`), Options{}, "/entry/0/resource/code/coding/0/display"},
		{"category not an array", bundleOf(`{"resourceType":"Observation","id":"o1","category":{"coding":[]}}`), Options{}, "/entry/0/resource/category"},
		{"note text not a string", bundleOf(labObs(`"valueString":"x","note":[{"text":{"div":"` + marker + `"}}]`)), Options{}, "/entry/0/resource/note/0/text"},
		{"referenceRange low value a string", bundleOf(labObs(`"valueString":"x","referenceRange":[{"low":{"value":"3.5"}}]`)), Options{}, "/entry/0/resource/referenceRange/0/low/value"},
		{"effectiveDateTime not FHIR", bundleOf(labObs(`"valueString":"x","effectiveDateTime":"14/03/2023"`)), Options{}, "/entry/0/resource/effectiveDateTime"},
		// A time of day without its zone is ambiguous by hours.
		{"effectiveDateTime without zone", bundleOf(labObs(`"valueString":"x","effectiveDateTime":"2023-03-14T08:30:00"`)), Options{}, "/entry/0/resource/effectiveDateTime"},
		// A later date candidate is checked even when an earlier one was found.
		{"issued malformed beside a good effective", bundleOf(labObs(`"valueString":"x","effectiveDateTime":"2023","issued":"` + marker + `"`)), Options{}, "/entry/0/resource/issued"},
		{"performedPeriod start malformed", bundleOf(`{"resourceType":"Procedure","id":"p","performedPeriod":{"start":"2023-13"}}`), Options{}, "/entry/0/resource/performedPeriod/start"},
		{"subject not an object", bundleOf(labObs(`"valueString":"x","subject":"Patient/1"`)), Options{}, "/entry/0/resource/subject"},
		// An id carrying free text (a name) would become a SourceID kept in clear.
		{"id not a FHIR id", bundleOf(strings.Replace(labObs(`"valueString":"x"`), `"lab-1"`, `"`+marker+` Testperson"`, 1)), Options{}, "/entry/0/resource/id"},
		{"fullUrl with spaces", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid: ` + marker + `","resource":{"resourceType":"Encounter"}}]}`, Options{}, "/entry/0/fullUrl"},
		// Two patients: a family export must not merge a relative's records into this account.
		{"two patients", bundleOf(patient, patient), Options{}, "/entry/1/resource"},
		// Smuggling a second document after the first.
		{"trailing garbage", bundleOf(labObs(`"valueString":"x"`)) + " " + marker, Options{}, ""},
		{"trailing second value", bundleOf() + `{}`, Options{}, ""},
		// Deep nesting must be refused before it reaches any recursive decoder.
		{"deeply nested arrays", strings.Repeat("[", 200000), Options{}, ""},
		{"deeply nested resource", bundleOf(labObs(`"extension":` + strings.Repeat(`[{"x":`, 60) + `1` + strings.Repeat(`}]`, 60))), Options{}, ""},
		// More entries than allowed: the cost of a bundle is bounded before mapping starts.
		{"too many entries", bundleOf(labObs(""), labObs(""), labObs("")), Options{MaxEntries: 2}, "/entry"},
		// Invalid UTF-8 would be stored raw in Content but read as U+FFFD.
		{"invalid UTF-8", bundleOf(labObs(`"valueString":"` + marker + "\xff\xfe" + `"`)), Options{}, ""},
		// PostgreSQL jsonb refuses \u0000: an upload must not become an internal error.
		{"NUL escape", bundleOf(labObs(`"valueString":"` + marker + `\u0000"`)), Options{}, ""},
		{"unpaired surrogate escape", bundleOf(labObs(`"valueString":"` + marker + `\ud800x"`)), Options{}, ""},
		{"lone low surrogate escape", bundleOf(labObs(`"valueString":"\udc00"`)), Options{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			batch, err := ParseBundle([]byte(tt.data), tt.opts)
			if err == nil {
				t.Fatalf("ParseBundle succeeded, want EINVALID")
			}
			if batch != nil {
				t.Fatalf("ParseBundle returned a batch with an error")
			}
			if got, want := phr.ErrorCode(err), phr.EINVALID; got != want {
				t.Fatalf("ErrorCode = %q, want %q (%v)", got, want, err)
			}
			if got, want := phr.ErrorField(err), tt.wantField; got != want {
				t.Fatalf("ErrorField = %q, want %q (%v)", got, want, err)
			}
			if strings.Contains(err.Error(), marker) {
				t.Fatalf("error quotes the input: %v", err)
			}
			if tt.wantField != "" && !strings.Contains(phr.ErrorMessage(err), tt.wantField) {
				t.Fatalf("message %q does not name the location %q", phr.ErrorMessage(err), tt.wantField)
			}
		})
	}
}

func TestParseBundleTestResult(t *testing.T) {
	t.Parallel()
	lab := func(code, extra string) string {
		return `{"resourceType":"Observation","id":"lab-1","status":"final",` +
			`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],` +
			`"code":` + code + "," + extra + `}`
	}
	loinc := `{"coding":[{"system":"http://loinc.org","code":"2823-3","display":"Potassium [Moles/volume]"}],"text":"Potassium"}`
	base := phr.TestResult{CodeSystem: "http://loinc.org", Code: "2823-3", Name: "Potassium", Source: "fhir", SourceID: "lab-1"}
	with := func(f func(*phr.TestResult)) *phr.TestResult {
		r := base
		f(&r)
		return &r
	}
	tests := []struct {
		name     string
		resource string
		want     *phr.TestResult
	}{
		{"quantity keeps the lab's digits", lab(loinc, `"valueQuantity":{"value":1.50E+2,"code":"mg/dL"},"effectiveDateTime":"2021-05-06"`),
			with(func(r *phr.TestResult) {
				r.Value, r.ValueType, r.Unit, r.EffectiveAt = "1.50E+2", "quantity", "mg/dL", time.Date(2021, 5, 6, 0, 0, 0, 0, time.UTC)
			})},
		// "<0.5" and "0.5" are different results.
		{"quantity comparator kept", lab(loinc, `"valueQuantity":{"value":0.5,"comparator":"<","unit":"mg/L"},"issued":"2021-05-06T10:11:12.345Z"`),
			with(func(r *phr.TestResult) {
				r.Value, r.ValueType, r.Unit, r.EffectiveAt = "<0.5", "quantity", "mg/L", time.Date(2021, 5, 6, 10, 11, 12, 345e6, time.UTC)
			})},
		{"coded value falls back to the code", lab(loinc, `"valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"260385009"}]}`),
			with(func(r *phr.TestResult) { r.Value, r.ValueType = "260385009", "coded" })},
		{"string value", lab(loinc, `"valueString":"see comment","effectiveInstant":"2020-01-02T03:04:05+02:00"`),
			with(func(r *phr.TestResult) {
				r.Value, r.ValueType, r.EffectiveAt = "see comment", "string", time.Date(2020, 1, 2, 1, 4, 5, 0, time.UTC)
			})},
		// An escaped backslash followed by "u0000" is text, not the NUL escape.
		{"escaped backslash is not an escape", lab(loinc, `"valueString":"a\\u0000"`),
			with(func(r *phr.TestResult) { r.Value, r.ValueType = `a\u0000`, "string" })},
		{"boolean value", lab(loinc, `"valueBoolean":false`), with(func(r *phr.TestResult) { r.Value, r.ValueType = "false", "string" })},
		{"integer value", lab(loinc, `"valueInteger":12`), with(func(r *phr.TestResult) { r.Value, r.ValueType = "12", "quantity" })},
		{"effectiveDateTime wins over issued", lab(loinc, `"valueInteger":1,"effectiveDateTime":"1999","issued":"2021-05-06T10:11:12Z"`),
			with(func(r *phr.TestResult) {
				r.Value, r.ValueType, r.EffectiveAt = "1", "quantity", time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
			})},
		{"first coding when no LOINC, name from display",
			lab(`{"coding":[{"code":""},{"system":"urn:local","code":"K1","display":"Kalium"}]}`, `"valueInteger":1`),
			&phr.TestResult{CodeSystem: "urn:local", Code: "K1", Name: "Kalium", Value: "1", ValueType: "quantity", Source: "fhir", SourceID: "lab-1"}},
		{"range low only, unit from code", lab(loinc, `"valueInteger":1,"referenceRange":[{"low":{"value":3.5,"code":"mmol/L"}},{"text":"ignored"}]`),
			with(func(r *phr.TestResult) { r.Value, r.ValueType, r.ReferenceRange = "1", "quantity", "≥ 3.5 mmol/L" })},
		{"range text only", lab(loinc, `"valueInteger":1,"referenceRange":[{"text":"negative"}]`),
			with(func(r *phr.TestResult) { r.Value, r.ValueType, r.ReferenceRange = "1", "quantity", "negative" })},
		// Legacy (STU3) category system URL from older portals.
		{"legacy category system",
			strings.Replace(lab(loinc, `"valueInteger":1`), "http://terminology.hl7.org/CodeSystem/observation-category", "http://hl7.org/fhir/observation-category", 1),
			with(func(r *phr.TestResult) { r.Value, r.ValueType = "1", "quantity" })},
		// Newlines in a label would fail the store's single-line text check.
		{"control characters in name flattened", lab(`{"coding":[{"system":"http://loinc.org","code":"2823-3"}],"text":"Potas\nsium\u0007"}`, `"valueInteger":1`),
			with(func(r *phr.TestResult) { r.Name, r.Value, r.ValueType = "Potas sium", "1", "quantity" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			batch, err := ParseBundle([]byte(bundleOf(tt.resource)), Options{})
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			if got, want := len(batch.TestResults), 1; got != want {
				t.Fatalf("len(TestResults) = %d, want %d (skipped %v)", got, want, batch.Skipped)
			}
			if d := diffTestResult(batch.TestResults[0], tt.want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func TestParseBundleHealthRecord(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 600)
	tests := []struct {
		name      string
		resource  string
		wantKind  string
		wantTitle string
		wantAt    time.Time
	}{
		{"condition onset wins", `{"resourceType":"Condition","id":"x","code":{"text":"Asthma"},"onsetDateTime":"2001-02-03","recordedDate":"2005"}`,
			phr.KindCondition, "Asthma", time.Date(2001, 2, 3, 0, 0, 0, 0, time.UTC)},
		{"condition onsetPeriod last", `{"resourceType":"Condition","id":"x","code":{"coding":[{"display":"Asthma"}]},"onsetPeriod":{"start":"2001"}}`,
			phr.KindCondition, "Asthma", time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"condition generic title, no date", `{"resourceType":"Condition","id":"x"}`, phr.KindCondition, "Condition", time.Time{}},
		{"medication", `{"resourceType":"MedicationRequest","id":"x","medicationCodeableConcept":{"text":"Metformin 500 MG"},"authoredOn":"2010-01-01T00:00:00-05:00"}`,
			phr.KindMedication, "Metformin 500 MG", time.Date(2010, 1, 1, 5, 0, 0, 0, time.UTC)},
		{"medication by reference display", `{"resourceType":"MedicationRequest","id":"x","medicationReference":{"reference":"urn:uuid:9","display":"Insulin"}}`,
			phr.KindMedication, "Insulin", time.Time{}},
		{"medication generic", `{"resourceType":"MedicationRequest","id":"x"}`, phr.KindMedication, "Medication", time.Time{}},
		{"immunization", `{"resourceType":"Immunization","id":"x","vaccineCode":{"text":"Influenza"},"occurrenceDateTime":"2019-10"}`,
			phr.KindImmunization, "Influenza", time.Date(2019, 10, 1, 0, 0, 0, 0, time.UTC)},
		{"procedure period", `{"resourceType":"Procedure","id":"x","code":{"text":"Appendectomy"},"performedPeriod":{"start":"2017-02-28T20:32:26+00:00"}}`,
			phr.KindProcedure, "Appendectomy", time.Date(2017, 2, 28, 20, 32, 26, 0, time.UTC)},
		{"allergy onset fallback", `{"resourceType":"AllergyIntolerance","id":"x","code":{"text":"Peanut"},"onsetDateTime":"2000"}`,
			phr.KindAllergy, "Peanut", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"allergy generic", `{"resourceType":"AllergyIntolerance","id":"x"}`, phr.KindAllergy, "Allergy", time.Time{}},
		{"care plan title", `{"resourceType":"CarePlan","id":"x","title":"Diet","category":[{"text":"Other"}],"period":{"start":"2019"},"created":"2018"}`,
			phr.KindCarePlan, "Diet", time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"care plan category display", `{"resourceType":"CarePlan","id":"x","category":[{"coding":[{"display":"Diabetes self management plan"}]}],"created":"2018"}`,
			phr.KindCarePlan, "Diabetes self management plan", time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"care plan generic", `{"resourceType":"CarePlan","id":"x"}`, phr.KindCarePlan, "Care plan", time.Time{}},
		{"diagnostic report issued", `{"resourceType":"DiagnosticReport","id":"x","code":{"text":"CBC"},"issued":"2013-02-19T20:32:26.828+00:00"}`,
			phr.KindDiagnosticReport, "CBC", time.Date(2013, 2, 19, 20, 32, 26, 828e6, time.UTC)},
		{"diagnostic report generic", `{"resourceType":"DiagnosticReport","id":"x"}`, phr.KindDiagnosticReport, "Diagnostic report", time.Time{}},
		// A 600-rune title is cut on a rune boundary, never in the middle of "é".
		{"title capped at 500 runes", `{"resourceType":"Condition","id":"x","code":{"text":"` + long + `"}}`,
			phr.KindCondition, strings.Repeat("é", 500), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			batch, err := ParseBundle([]byte(bundleOf(tt.resource)), Options{})
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			if got, want := len(batch.HealthRecords), 1; got != want {
				t.Fatalf("len(HealthRecords) = %d, want %d (skipped %v)", got, want, batch.Skipped)
			}
			want := &phr.HealthRecord{Kind: tt.wantKind, Title: tt.wantTitle, Content: json.RawMessage(tt.resource),
				RecordedAt: tt.wantAt, Source: "fhir", SourceID: "x"}
			if d := diffHealthRecord(batch.HealthRecords[0], want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func TestParseBundleSkips(t *testing.T) {
	t.Parallel()
	lab := func(id, extra string) string {
		return `{"resourceType":"Observation",` + id + `"status":"final",` +
			`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]}` + extra + `}`
	}
	patient := `{"resourceType":"Patient","id":"me"}`
	tests := []struct {
		name        string
		resources   []string
		wantResults int
		wantRecords int
		wantSkipped []phr.ImportSkip
	}{
		{"no id: fullUrl is the SourceID", []string{lab("", `,"valueInteger":1`)}, 1, 0, []phr.ImportSkip{}},
		{"empty bundle", nil, 0, 0, []phr.ImportSkip{}},
		// A retracted result must not show up as the patient's value.
		{"entered in error", []string{strings.Replace(lab(`"id":"a",`, `,"valueInteger":1`), `"final"`, `"entered-in-error"`, 1),
			`{"resourceType":"Condition","id":"c","verificationStatus":{"coding":[{"code":"entered-in-error"}]}}`},
			0, 0, []phr.ImportSkip{sk("Condition", ReasonEnteredInErr, 1), sk("Observation", ReasonEnteredInErr, 1)}},
		{"unsupported value type", []string{lab(`"id":"a",`, `,"valueRange":{"low":{"value":1}}`)}, 0, 0, []phr.ImportSkip{sk("Observation", ReasonValueType, 1)}},
		{"quantity without value", []string{lab(`"id":"a",`, `,"valueQuantity":{"unit":"mg"}`)}, 0, 0, []phr.ImportSkip{sk("Observation", ReasonNoValue, 1)}},
		{"component only", []string{lab(`"id":"a",`, `,"component":[{"valueInteger":1}]`)}, 0, 0, []phr.ImportSkip{sk("Observation", ReasonNoValue, 1)}},
		{"text-only code", []string{strings.Replace(lab(`"id":"a",`, `,"valueInteger":1`), `"code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]}`, `"code":{"text":"K"}`, 1)},
			0, 0, []phr.ImportSkip{sk("Observation", ReasonNoCode, 1)}},
		// Same id across kinds is legal FHIR (ids are per type); within a kind it is a duplicate.
		{"duplicates per kind", []string{lab(`"id":"a",`, `,"valueInteger":1`), lab(`"id":"a",`, `,"valueInteger":2`),
			`{"resourceType":"Condition","id":"a"}`, `{"resourceType":"Procedure","id":"a"}`, `{"resourceType":"Procedure","id":"a"}`},
			1, 2, []phr.ImportSkip{sk("Observation", ReasonDuplicate, 1), sk("Procedure", ReasonDuplicate, 1)}},
		// A relative's records in a portal export stay out of this account.
		{"other patient by relative reference", []string{patient, `{"resourceType":"Immunization","id":"i","patient":{"reference":"Patient/sibling"}}`},
			0, 0, []phr.ImportSkip{sk("Immunization", ReasonOtherPatient, 1), sk("Patient", ReasonPatient, 1)}},
		{"other patient by dangling urn", []string{patient, `{"resourceType":"Condition","id":"c","subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}}`},
			0, 0, []phr.ImportSkip{sk("Condition", ReasonOtherPatient, 1), sk("Patient", ReasonPatient, 1)}},
		{"own patient by absolute URL", []string{patient, `{"resourceType":"Condition","id":"c","subject":{"reference":"https://portal.example/fhir/Patient/me/_history/3"}}`},
			0, 1, []phr.ImportSkip{sk("Patient", ReasonPatient, 1)}},
		{"own patient by fullUrl", []string{patient, `{"resourceType":"Condition","id":"c","subject":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000100"}}`},
			0, 1, []phr.ImportSkip{sk("Patient", ReasonPatient, 1)}},
		// An invented resource type is the sender's text: it must not reach the report.
		{"unknown resource type", []string{`{"resourceType":"` + marker + `Smith"}`, `{"resourceType":"Claim"}`, `{"resourceType":"Claim"}`},
			0, 0, []phr.ImportSkip{sk("Claim", ReasonNotImported, 2), sk("unknown", ReasonUnknownType, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			batch, err := ParseBundle([]byte(bundleOf(tt.resources...)), Options{})
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			if got, want := len(batch.TestResults), tt.wantResults; got != want {
				t.Fatalf("len(TestResults) = %d, want %d (skipped %v)", got, want, batch.Skipped)
			}
			if got, want := len(batch.HealthRecords), tt.wantRecords; got != want {
				t.Fatalf("len(HealthRecords) = %d, want %d (skipped %v)", got, want, batch.Skipped)
			}
			if got, want := fmt.Sprint(batch.Skipped), fmt.Sprint(tt.wantSkipped); got != want {
				t.Fatalf("Skipped = %s, want %s", got, want)
			}
			for _, r := range batch.TestResults {
				if r.SourceID == "" {
					t.Fatalf("test result without SourceID")
				}
			}
		})
	}
}

func sk(typ, reason string, n int) phr.ImportSkip {
	return phr.ImportSkip{ResourceType: typ, Reason: reason, Count: n}
}

func FuzzParseBundle(f *testing.F) {
	f.Add(mustReadFile(f, filepath.Join("testdata", "small_bundle.json")))
	f.Add([]byte(bundleOf(labObs(`"valueQuantity":{"value":5.30,"unit":"mmol/L"},"referenceRange":[{"low":{"value":1},"high":{"value":2}}]`))))
	f.Add([]byte(bundleOf(`{"resourceType":"CarePlan","id":"x","category":[{"text":"a"}],"period":{"start":"2019"}}`,
		`{"resourceType":"Patient","id":"p"}`, `{"resourceType":"Condition","subject":{"reference":"Patient/q"}}`)))
	f.Add([]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Observation"}}]}`))
	f.Add([]byte(`[[[{"\ud800":1}]]]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		batch, err := ParseBundle(data, Options{MaxEntries: 50})
		if err != nil {
			if batch != nil {
				t.Fatalf("batch returned with error %v", err)
			}
			if got, want := phr.ErrorCode(err), phr.EINVALID; got != want {
				t.Fatalf("ErrorCode = %q, want %q", got, want)
			}
			return
		}
		for _, r := range batch.TestResults {
			if r.Source != "fhir" || r.SourceID == "" {
				t.Fatalf("test result with Source %q, SourceID %q", r.Source, r.SourceID)
			}
		}
		for _, r := range batch.HealthRecords {
			if r.Source != "fhir" || r.SourceID == "" {
				t.Fatalf("health record with Source %q, SourceID %q", r.Source, r.SourceID)
			}
			if !json.Valid(r.Content) {
				t.Fatalf("health record Content is not JSON")
			}
		}
	})
}

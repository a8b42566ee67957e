package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/vitalnexa/vitalnexa/internal/fhir/fhirschema"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var (
	exportAt = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	// testPatient carries marker in its name: no error may quote it.
	testPatient = Patient{ID: "6f1c2a9e-4b1d-4c57-9a3e-2f0b7d1e8c44", FullName: marker + " Testperson",
		DateOfBirth: "1980-04-01", Email: "quenby@example.org"}
)

// mustExport writes results, then records, into a bundle for testPatient.
func mustExport(tb testing.TB, results []*phr.TestResult, records []*phr.HealthRecord) []byte {
	tb.Helper()
	var out bytes.Buffer
	w, err := NewBundleWriter(&out, testPatient, exportAt)
	if err != nil {
		tb.Fatalf("NewBundleWriter: %v", err)
	}
	for _, r := range results {
		if err := w.TestResult(r); err != nil {
			tb.Fatalf("TestResult: %v", err)
		}
	}
	for _, r := range records {
		if err := w.HealthRecord(r); err != nil {
			tb.Fatalf("HealthRecord: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
	return out.Bytes()
}

// mustReimport parses an export and checks that it skipped nothing but the Patient.
func mustReimport(tb testing.TB, data []byte) *phr.ImportBatch {
	tb.Helper()
	batch, err := ParseBundle(data, Options{})
	if err != nil {
		tb.Fatalf("ParseBundle(export): %v", err)
	}
	if got, want := fmt.Sprint(batch.Skipped), fmt.Sprint([]phr.ImportSkip{sk("Patient", ReasonPatient, 1)}); got != want {
		tb.Fatalf("re-import Skipped = %s, want %s", got, want)
	}
	return batch
}

// storedResults and storedRecords give items the identity the store gives them.
func storedResults(rs []*phr.TestResult) {
	for _, r := range rs {
		r.ID, r.UserID, r.CreatedAt = uuid.NewString(), testPatient.ID, exportAt
	}
}

func storedRecords(rs []*phr.HealthRecord) {
	for _, r := range rs {
		r.ID, r.UserID, r.CreatedAt, r.UpdatedAt = uuid.NewString(), testPatient.ID, exportAt, exportAt
	}
}

// diffStoredTestResult compares a re-imported result with the stored one, less what the
// store assigns.
func diffStoredTestResult(got, stored *phr.TestResult) string {
	want := *stored
	want.ID, want.UserID, want.CreatedAt = "", "", time.Time{}
	return diffTestResult(got, &want)
}

// entryTypes returns the resourceType of each entry of a bundle.
func entryTypes(tb testing.TB, data []byte) []string {
	tb.Helper()
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		tb.Fatal(err)
	}
	out := make([]string, len(b.Entry))
	for i, e := range b.Entry {
		out[i] = e.Resource.ResourceType
	}
	return out
}

// TestBundleWriterShared exports what each Synthea bundle imports, validates the export
// against the FHIR R4 schema and imports it again: every result and record comes back
// with the same fields, none skipped.
func TestBundleWriterShared(t *testing.T) {
	t.Parallel()
	for _, path := range mustSharedBundles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			batch, err := ParseBundle(mustReadFile(t, path), Options{})
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			storedResults(batch.TestResults)
			storedRecords(batch.HealthRecords)
			out := mustExport(t, batch.TestResults, batch.HealthRecords)

			again := mustReimport(t, out)
			if got, want := len(again.TestResults), len(batch.TestResults); got != want {
				t.Fatalf("len(TestResults) = %d, want %d", got, want)
			}
			if got, want := len(again.HealthRecords), len(batch.HealthRecords); got != want {
				t.Fatalf("len(HealthRecords) = %d, want %d", got, want)
			}
			for i, r := range again.TestResults {
				if d := diffStoredTestResult(r, batch.TestResults[i]); d != "" {
					t.Fatalf("TestResults[%d]: %s", i, d)
				}
			}
			for i, r := range again.HealthRecords {
				if d := diffHealthRecord(r, batch.HealthRecords[i]); d != "" {
					t.Fatalf("HealthRecords[%d]: %s", i, d)
				}
			}
			// Imported data needs none of our extensions but the pointer back to each
			// record's original subject: FHIR's own elements carry it all.
			for _, ext := range []string{extTestResult, extRecordContent} {
				if strings.Contains(string(out), ext) {
					t.Fatalf("export uses %s for imported data", ext)
				}
			}
			if got, want := entryTypes(t, out)[0], "Patient"; got != want {
				t.Fatalf("first entry is a %s, want %s", got, want)
			}

			// The store does not return SourceIDs: the re-import then identifies records by
			// their resource id and results by their stored id, and still takes them all.
			for _, r := range batch.TestResults {
				r.SourceID = ""
			}
			for _, r := range batch.HealthRecords {
				r.SourceID = ""
			}
			plain := mustReimport(t, mustExport(t, batch.TestResults, batch.HealthRecords))
			for i, r := range plain.TestResults {
				if got, want := r.SourceID, batch.TestResults[i].ID; got != want {
					t.Fatalf("TestResults[%d].SourceID = %q, want the stored ID %q", i, got, want)
				}
			}
			for i, r := range plain.HealthRecords {
				if got, want := r.SourceID, again.HealthRecords[i].SourceID; got != want {
					t.Fatalf("HealthRecords[%d].SourceID = %q, want the resource id %q", i, got, want)
				}
			}
			if got, want := len(plain.HealthRecords), len(batch.HealthRecords); got != want {
				t.Fatalf("without SourceIDs: len(HealthRecords) = %d, want %d", got, want)
			}

			fhirschema.MustValid(t, R4ResourceTypes(), out)
		})
	}
}

// manualContents are Contents a user may type: any JSON value, escapes and layout kept.
var manualContents = []string{
	`{"text":"` + marker + ` <b>itchy</b> & red","since":"2020","tags":["a","é"]}`,
	"{\n  \"dose\": \"500 mg\",\n  \"times\": [1, 2.50, null, true]\n}",
	`"just a line \u00e9 \ud83d\ude00"`,
	`[{"a":{"b":[]}}]`,
	`42`,
}

// TestBundleWriterManualRecord exports records the user typed, of every kind: each becomes
// a valid resource of its kind's type and re-imports with the same kind, title, date and
// Content.
func TestBundleWriterManualRecord(t *testing.T) {
	t.Parallel()
	for _, kind := range phr.HealthRecordKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var records []*phr.HealthRecord
			for i, content := range manualContents {
				r := &phr.HealthRecord{Kind: kind, Title: fmt.Sprintf("%s title %d é", marker, i), Content: json.RawMessage(content),
					RecordedAt: time.Date(2021, 2, 3, 4, 5, 6, i*1000, time.FixedZone("CET", 3600)), Source: "manual"}
				switch i {
				case 1:
					r.RecordedAt = time.Time{} // no date
				case 2:
					r.Title = "  " + r.Title + " " // kept as typed, though the import trims labels
				}
				records = append(records, r)
			}
			storedRecords(records)
			out := mustExport(t, nil, records)
			for i, typ := range entryTypes(t, out)[1:] {
				if got, want := typ, kindTypes[kind]; got != want {
					t.Fatalf("entry %d is a %s, want %s", i+1, got, want)
				}
			}
			again := mustReimport(t, out)
			if got, want := len(again.HealthRecords), len(records); got != want {
				t.Fatalf("len(HealthRecords) = %d, want %d", got, want)
			}
			for i, r := range again.HealthRecords {
				want := *records[i]
				want.Source, want.SourceID = "fhir", records[i].ID // it came back through an import
				if d := diffHealthRecord(r, &want); d != "" {
					t.Fatalf("HealthRecords[%d]: %s", i, d)
				}
			}
			fhirschema.MustValid(t, R4ResourceTypes(), out)
		})
	}
}

// TestBundleWriterImportedRecord covers records from FHIR that the export must either write
// back as they came or, once changed, write like a typed record.
func TestBundleWriterImportedRecord(t *testing.T) {
	t.Parallel()
	cond := func(extra string) string {
		return `{"resourceType":"Condition",` + extra + `"code":{"text":"Asthma"},"recordedDate":"2019-06-02T10:00:00Z"}`
	}
	at := time.Date(2019, 6, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		record   phr.HealthRecord
		verbatim bool
	}{
		// A relative's reference in a stored record would read as another person's.
		{"subject another patient's", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c1",
			Content: json.RawMessage(cond(`"id":"c1","subject":{"reference":"Patient/someone","display":"` + marker + `"},`))}, true},
		{"subject a dangling urn", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c2",
			Content: json.RawMessage(cond(`"id":"c2","subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"},`))}, true},
		{"subject contained", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c3",
			Content: json.RawMessage(cond(`"id":"c3","subject":{"reference":"#p"},`))}, true},
		{"escaped member name", phr.HealthRecord{Kind: phr.KindImmunization, Title: "Flu", SourceID: "i1",
			Content: json.RawMessage(`{"resourceType":"Immunization","id":"i1","status":"completed","vaccineCode":{"text":"Flu"},"\u0070atient":{"reference":"Patient/x"},"occurrenceString":"autumn"}`)}, true},
		// The resource had no id: its fullUrl was the SourceID, and stays the fullUrl.
		{"no id, SourceID a fullUrl", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at,
			SourceID: "urn:uuid:22222222-2222-4222-8222-222222222222", Content: json.RawMessage(cond(`"subject":{"reference":"Patient/p"},`))}, true},
		{"no id, no SourceID", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at,
			Content: json.RawMessage(cond(`"subject":{"reference":"Patient/p"},`))}, true},
		// Changed after import: the Content no longer gives the record's title or kind.
		{"title changed", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma since childhood", RecordedAt: at, SourceID: "c4",
			Content: json.RawMessage(cond(`"id":"c4",`))}, false},
		{"kind changed", phr.HealthRecord{Kind: phr.KindNote, Title: "Asthma", RecordedAt: at, SourceID: "c5",
			Content: json.RawMessage(cond(`"id":"c5",`))}, false},
		{"content not a resource", phr.HealthRecord{Kind: phr.KindProcedure, Title: "Appendectomy", SourceID: "p1",
			Content: json.RawMessage(`{"what":"` + marker + `"}`)}, false},
		{"content not compact", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c6",
			Content: json.RawMessage(strings.ReplaceAll(cond(`"id":"c6",`), ",", ", "))}, false},
		{"content id not the SourceID", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c7",
			Content: json.RawMessage(cond(`"id":"other",`))}, false},
		{"subject not a reference object", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c8",
			Content: json.RawMessage(cond(`"id":"c8","subject":"Patient/1",`))}, false},
		{"entered in error", phr.HealthRecord{Kind: phr.KindProcedure, Title: "Procedure", SourceID: "p2",
			Content: json.RawMessage(`{"resourceType":"Procedure","id":"p2","status":"entered-in-error"}`)}, false},
		// A record that holds our own extension would be read through it.
		{"content carries our extension", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c9",
			Content: json.RawMessage(cond(`"id":"c9","extension":[{"url":"` + extRecordContent + `","valueString":"1"}],`))}, false},
		{"content carries our title", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c10",
			Content: json.RawMessage(cond(`"id":"c10","extension":[{"url":"` + extRecordTitle + `","valueString":"Asthma"}],`))}, false},
		{"subject carries our extension", phr.HealthRecord{Kind: phr.KindCondition, Title: "Asthma", RecordedAt: at, SourceID: "c11",
			Content: json.RawMessage(cond(`"id":"c11","subject":{"extension":[{"url":"` + extOriginalReference + `","valueString":"{}"}],"reference":"Patient/p"},`))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tt.record
			r.Source = "fhir"
			storedRecords([]*phr.HealthRecord{&r})
			out := mustExport(t, nil, []*phr.HealthRecord{&r})
			if got, want := !strings.Contains(string(out), extRecordContent+`","valueString":"`), tt.verbatim; got != want {
				t.Fatalf("written as it came = %v, want %v", got, want)
			}
			again := mustReimport(t, out)
			if got, want := len(again.HealthRecords), 1; got != want {
				t.Fatalf("len(HealthRecords) = %d, want %d", got, want)
			}
			want := r
			if want.SourceID == "" {
				want.SourceID = fullURLFor("Condition", r.ID) // the fullUrl, for want of an id
			}
			if d := diffHealthRecord(again.HealthRecords[0], &want); d != "" {
				t.Fatal(d)
			}
			fhirschema.MustValid(t, R4ResourceTypes(), out)
		})
	}
}

// TestBundleWriterTestResult exports single results, from FHIR and typed, and re-imports
// them: the same fields come back, through FHIR's elements where they can carry them and
// through extTestResult where they cannot.
func TestBundleWriterTestResult(t *testing.T) {
	t.Parallel()
	base := phr.TestResult{CodeSystem: "http://loinc.org", Code: "2823-3", Name: "Potassium", Value: "5.30", ValueType: "quantity",
		Unit: "mmol/L", ReferenceRange: "3.5–5.1 mmol/L", Notes: "Haemolysed.\nRepeat advised.",
		EffectiveAt: time.Date(2023, 3, 14, 7, 30, 0, 123456000, time.UTC), Source: "fhir", SourceID: "obs-1"}
	with := func(f func(*phr.TestResult)) phr.TestResult {
		r := base
		f(&r)
		return r
	}
	tests := []struct {
		name    string
		result  phr.TestResult
		wantExt bool
	}{
		{"quantity", base, false},
		{"comparator", with(func(r *phr.TestResult) { r.Value = "<=0.5" }), false},
		{"exponent", with(func(r *phr.TestResult) { r.Value = "-1.50E+2" }), false},
		{"integer without unit", with(func(r *phr.TestResult) { r.Value, r.Unit = "12", "" }), false},
		{"unit not UCUM-like", with(func(r *phr.TestResult) { r.Unit = "mg per dL" }), false},
		{"coded", with(func(r *phr.TestResult) { r.Value, r.ValueType, r.Unit = "Cloudy urine (finding)", "coded", "" }), false},
		{"string on lines", with(func(r *phr.TestResult) { r.Value, r.ValueType, r.Unit = "see\n\tcomment", "string", "" }), false},
		{"no system, no range, no notes, no date", with(func(r *phr.TestResult) {
			r.CodeSystem, r.ReferenceRange, r.Notes, r.EffectiveAt = "", "", "", time.Time{}
		}), false},
		{"SourceID a fullUrl", with(func(r *phr.TestResult) { r.SourceID = "urn:uuid:33333333-3333-4333-8333-333333333333" }), false},
		{"no SourceID", with(func(r *phr.TestResult) { r.SourceID = "" }), false},
		// What a person typed or corrected, which FHIR's elements cannot hold as it is.
		{"manual", with(func(r *phr.TestResult) { r.Source, r.SourceID = "manual", "" }), false},
		{"quantity not a JSON number", with(func(r *phr.TestResult) { r.Value = ".5" }), true},
		{"quantity with a comma", with(func(r *phr.TestResult) { r.Value = "5,3" }), true},
		{"name with spaces around", with(func(r *phr.TestResult) { r.Name = " Potassium " }), true},
		{"no name", with(func(r *phr.TestResult) { r.Name = "" }), true},
		{"code with two spaces", with(func(r *phr.TestResult) { r.Code = "K  1" }), true},
		{"code system with a space", with(func(r *phr.TestResult) { r.CodeSystem = "urn:local codes" }), true},
		{"unit with spaces around", with(func(r *phr.TestResult) { r.Unit = " mmol/L " }), true},
		{"value with a tab", with(func(r *phr.TestResult) { r.Value, r.ValueType, r.Unit = "a\tb ", "string", "" }), true},
		{"coded with a unit", with(func(r *phr.TestResult) { r.Value, r.ValueType = "Cloudy", "coded" }), true},
		{"notes with spaces around", with(func(r *phr.TestResult) { r.Notes = " Repeat. " }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tt.result
			storedResults([]*phr.TestResult{&r})
			out := mustExport(t, []*phr.TestResult{&r}, nil)
			if got, want := strings.Contains(string(out), extTestResult), tt.wantExt; got != want {
				t.Fatalf("uses %s = %v, want %v", extTestResult, got, want)
			}
			again := mustReimport(t, out)
			if got, want := len(again.TestResults), 1; got != want {
				t.Fatalf("len(TestResults) = %d, want %d", got, want)
			}
			want := r
			want.Source = "fhir"
			if want.SourceID == "" {
				want.SourceID = r.ID
			}
			if d := diffStoredTestResult(again.TestResults[0], &want); d != "" {
				t.Fatal(d)
			}
			fhirschema.MustValid(t, R4ResourceTypes(), out)
		})
	}

	// Without a code or a value there is nothing the import takes, from us or anyone.
	for name, f := range map[string]func(*phr.TestResult){
		ReasonNoCode:  func(r *phr.TestResult) { r.Code, r.Name = "", "Potassium" },
		ReasonNoValue: func(r *phr.TestResult) { r.Value = "" },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := with(f)
			storedResults([]*phr.TestResult{&r})
			out := mustExport(t, []*phr.TestResult{&r}, nil)
			batch, err := ParseBundle(out, Options{})
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			want := []phr.ImportSkip{sk("Observation", name, 1), sk("Patient", ReasonPatient, 1)}
			if got, want := fmt.Sprint(batch.Skipped), fmt.Sprint(want); got != want {
				t.Fatalf("Skipped = %s, want %s", got, want)
			}
			fhirschema.MustValid(t, R4ResourceTypes(), out)
		})
	}
}

// TestBundleWriterOutput pins the shape of a small export: the Patient first and the
// elements where a FHIR reader looks for them.
func TestBundleWriterOutput(t *testing.T) {
	t.Parallel()
	r := &phr.TestResult{ID: "0b9f4a61-27d5-4e0e-9a53-8f1d2f3c4b5a", CodeSystem: "http://loinc.org", Code: "2823-3", Name: "Potassium",
		Value: "<5.30", ValueType: "quantity", Unit: "mmol/L", ReferenceRange: "3.5–5.1 mmol/L", Notes: "A & B",
		EffectiveAt: time.Date(2023, 3, 14, 8, 30, 0, 0, time.FixedZone("", 3600)), Source: "manual"}
	got := string(mustExport(t, []*phr.TestResult{r}, nil))
	want := `{"resourceType":"Bundle","type":"collection","timestamp":"2026-03-04T05:06:07Z","entry":[` +
		`{"fullUrl":"urn:uuid:6f1c2a9e-4b1d-4c57-9a3e-2f0b7d1e8c44","resource":{"resourceType":"Patient","id":"6f1c2a9e-4b1d-4c57-9a3e-2f0b7d1e8c44",` +
		`"name":[{"text":"Quenby Testperson"}],"telecom":[{"system":"email","value":"quenby@example.org"}],"birthDate":"1980-04-01"}},` +
		`{"fullUrl":"urn:uuid:0b9f4a61-27d5-4e0e-9a53-8f1d2f3c4b5a","resource":{"resourceType":"Observation","id":"0b9f4a61-27d5-4e0e-9a53-8f1d2f3c4b5a",` +
		`"status":"unknown","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory","display":"Laboratory"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"2823-3","display":"Potassium"}],"text":"Potassium"},` +
		`"subject":{"reference":"urn:uuid:6f1c2a9e-4b1d-4c57-9a3e-2f0b7d1e8c44"},"effectiveDateTime":"2023-03-14T07:30:00Z",` +
		`"valueQuantity":{"value":5.30,"comparator":"<","unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"},` +
		`"note":[{"text":"A & B"}],"referenceRange":[{"text":"3.5–5.1 mmol/L"}]}}]}`
	if got != want {
		t.Fatalf("export =\n%s\nwant\n%s", got, want)
	}
	fhirschema.MustValid(t, R4ResourceTypes(), []byte(got))
}

// TestBundleWriterDeterministic writes the same account twice, and a record of each kind
// and source: the bytes are the same every time.
func TestBundleWriterDeterministic(t *testing.T) {
	t.Parallel()
	var records []*phr.HealthRecord
	for i, kind := range phr.HealthRecordKinds {
		records = append(records, &phr.HealthRecord{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Kind: kind, Title: "T " + kind,
			Content: json.RawMessage(`{"b":1,"a":[2,1]}`), RecordedAt: exportAt.Add(-time.Duration(i) * time.Hour), Source: "manual"})
	}
	records = append(records, &phr.HealthRecord{ID: "99999999-0000-4000-8000-000000000000", Kind: phr.KindCondition, Title: "Asthma",
		Content: json.RawMessage(`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/1"},"code":{"text":"Asthma"}}`),
		Source:  "fhir", SourceID: "c1"})
	results := []*phr.TestResult{{ID: "aaaaaaaa-0000-4000-8000-000000000000", Code: "1", Name: "N", Value: "x,1", ValueType: "quantity",
		Unit: "u", Source: "manual"}}
	first := mustExport(t, results, records)
	for range 20 {
		if got := mustExport(t, results, records); !bytes.Equal(got, first) {
			t.Fatalf("export differs between runs:\n%s\n%s", got, first)
		}
	}
	fhirschema.MustValid(t, R4ResourceTypes(), first)
}

// writeLog records each Write the writer makes, and can fail after some.
type writeLog struct {
	writes [][]byte
	failAt int // the Write that fails (1-based); 0 never
}

func (l *writeLog) Write(p []byte) (int, error) {
	if len(l.writes)+1 == l.failAt {
		return 0, errors.New("connection reset")
	}
	l.writes = append(l.writes, bytes.Clone(p))
	return len(p), nil
}

// TestBundleWriterStreams checks that each entry goes to w as soon as it is written, whole,
// and that a failed write ends the writer.
func TestBundleWriterStreams(t *testing.T) {
	t.Parallel()
	rec := &phr.HealthRecord{ID: "11111111-0000-4000-8000-000000000000", Kind: phr.KindNote, Title: "N", Content: json.RawMessage(`{}`), Source: "manual"}
	res := &phr.TestResult{ID: "22222222-0000-4000-8000-000000000000", Code: "1", Name: "N", Value: "1", ValueType: "quantity", Source: "manual"}

	var log writeLog
	w, err := NewBundleWriter(&log, testPatient, exportAt)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(log.writes), 1; got != want {
		t.Fatalf("writes after NewBundleWriter = %d, want %d", got, want)
	}
	for i := range 3 {
		if err := w.TestResult(res); err != nil {
			t.Fatal(err)
		}
		if err := w.HealthRecord(rec); err != nil {
			t.Fatal(err)
		}
		if got, want := len(log.writes), 3+2*i; got != want {
			t.Fatalf("writes = %d, want %d: one per entry", got, want)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := string(log.writes[len(log.writes)-1]), "]}"; got != want {
		t.Fatalf("Close wrote %q, want %q", got, want)
	}
	// Every entry was written as one piece: the bundle is the writes put together.
	out := bytes.Join(log.writes, nil)
	if got, want := len(entryTypes(t, out)), 7; got != want {
		t.Fatalf("entries = %d, want %d", got, want)
	}
	if err := w.TestResult(res); err == nil {
		t.Fatalf("TestResult after Close succeeded")
	}
	if err := w.Close(); err == nil {
		t.Fatalf("Close after Close succeeded")
	}

	// A connection cut on the second entry: that error, then the same for every call.
	failing := &writeLog{failAt: 3}
	w, err = NewBundleWriter(failing, testPatient, exportAt)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.TestResult(res); err != nil {
		t.Fatal(err)
	}
	err = w.HealthRecord(rec)
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("HealthRecord on a failed write = %v, want the write's error", err)
	}
	if err2 := w.TestResult(res); !errors.Is(err2, err) {
		t.Fatalf("TestResult after a failed write = %v, want %v", err2, err)
	}
	if err2 := w.Close(); !errors.Is(err2, err) {
		t.Fatalf("Close after a failed write = %v, want %v", err2, err)
	}
	if got, want := len(failing.writes), 2; got != want {
		t.Fatalf("writes = %d, want %d", got, want)
	}
	if _, err := NewBundleWriter(&writeLog{failAt: 1}, testPatient, exportAt); err == nil {
		t.Fatalf("NewBundleWriter on a failed write succeeded")
	}
}

// TestBundleWriterErrors checks that an item the writer cannot express is refused whole,
// with an error that names the rule and never a value, and that writing goes on.
func TestBundleWriterErrors(t *testing.T) {
	t.Parallel()
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	okResult := phr.TestResult{ID: "22222222-0000-4000-8000-000000000000", Code: "1", Name: marker, Value: marker, ValueType: "string", Source: "manual"}
	okRecord := phr.HealthRecord{ID: "11111111-0000-4000-8000-000000000000", Kind: phr.KindNote, Title: marker,
		Content: json.RawMessage(`"` + marker + `"`), Source: "manual"}
	results := map[string]func(*phr.TestResult){
		"value type":        func(r *phr.TestResult) { r.ValueType = marker },
		"effective time":    func(r *phr.TestResult) { r.EffectiveAt = far },
		"no identity":       func(r *phr.TestResult) { r.ID = "" },
		"id not a FHIR id":  func(r *phr.TestResult) { r.ID = marker + " Testperson" },
		"source id garbage": func(r *phr.TestResult) { r.SourceID = marker + " Testperson" },
	}
	records := map[string]func(*phr.HealthRecord){
		"kind":             func(r *phr.HealthRecord) { r.Kind = marker },
		"content":          func(r *phr.HealthRecord) { r.Content = json.RawMessage(marker) },
		"recorded time":    func(r *phr.HealthRecord) { r.RecordedAt = far },
		"no identity":      func(r *phr.HealthRecord) { r.ID = "" },
		"fhir, no content": func(r *phr.HealthRecord) { r.Source, r.Content = "fhir", nil },
	}
	var log writeLog
	w, err := NewBundleWriter(&log, testPatient, exportAt)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		if strings.Contains(err.Error(), marker) {
			t.Fatalf("%s: error quotes a value: %v", what, err)
		}
		if got, want := len(log.writes), 1; got != want {
			t.Fatalf("%s: %d writes, want %d: a refused item writes nothing", what, got, want)
		}
	}
	for name, f := range results {
		r := okResult
		f(&r)
		check("test result "+name, w.TestResult(&r))
	}
	for name, f := range records {
		r := okRecord
		f(&r)
		check("health record "+name, w.HealthRecord(&r))
	}
	if err := w.TestResult(&okResult); err != nil {
		t.Fatalf("TestResult after refused items: %v", err)
	}
	if err := w.HealthRecord(&okRecord); err != nil {
		t.Fatalf("HealthRecord after refused items: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mustReimport(t, bytes.Join(log.writes, nil))

	for name, p := range map[string]Patient{
		"date of birth":            {ID: testPatient.ID, DateOfBirth: marker},
		"impossible date of birth": {ID: testPatient.ID, DateOfBirth: "1980-02-30"},
	} {
		if _, err := NewBundleWriter(&log, p, exportAt); err == nil || strings.Contains(err.Error(), marker) {
			t.Fatalf("patient %s: NewBundleWriter error = %v, want one without the value", name, err)
		}
	}
	if _, err := NewBundleWriter(&log, testPatient, time.Time{}); err == nil {
		t.Fatalf("NewBundleWriter without a time succeeded")
	}
}

// TestFHIRSchemaRejects makes sure the validation can fail: a valid export broken in the
// ways a faulty writer would break it is refused.
func TestFHIRSchemaRejects(t *testing.T) {
	t.Parallel()
	v := fhirschema.Must(t, R4ResourceTypes())
	sch := v.Schema
	results := []*phr.TestResult{{Code: "2823-3", Name: "Potassium", Value: "5.3", ValueType: "quantity", Unit: "mmol/L",
		EffectiveAt: exportAt, Source: "manual"}}
	records := []*phr.HealthRecord{{Kind: phr.KindImmunization, Title: "Flu", Content: json.RawMessage(`{}`), RecordedAt: exportAt, Source: "manual"}}
	storedResults(results)
	storedRecords(records)
	good := mustExport(t, results, records)
	if err := v.Validate(good); err != nil {
		t.Fatalf("the unbroken export is not valid: %v", err)
	}
	tests := []struct {
		name        string
		breakIt     func(b map[string]any)
		schemaAlone bool // the JSON schema itself refuses it (else requiredElements does)
	}{
		{"observation date without zone", func(b map[string]any) { resource(b, 1)["effectiveDateTime"] = "2023-03-14T08:30:00" }, true},
		{"observation date not a date", func(b map[string]any) { resource(b, 1)["effectiveDateTime"] = "14/03/2023" }, true},
		{"observation status not a code of its", func(b map[string]any) { resource(b, 1)["status"] = "done" }, true},
		{"observation without code", func(b map[string]any) { delete(resource(b, 1), "code") }, true},
		{"observation with an unknown element", func(b map[string]any) { resource(b, 1)["valueText"] = "5.3" }, true},
		{"quantity value a string", func(b map[string]any) {
			resource(b, 1)["valueQuantity"].(map[string]any)["value"] = "5.3"
		}, true},
		{"code with two spaces", func(b map[string]any) {
			resource(b, 1)["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] = "2823  3"
		}, true},
		{"empty string", func(b map[string]any) { resource(b, 2)["extension"].([]any)[0].(map[string]any)["valueString"] = "" }, true},
		{"id with a space", func(b map[string]any) { resource(b, 2)["id"] = "a b" }, true},
		{"immunization without vaccineCode", func(b map[string]any) { delete(resource(b, 2), "vaccineCode") }, true},
		{"bundle type not a code of its", func(b map[string]any) { b["type"] = "bag" }, true},
		{"not a resource type", func(b map[string]any) { resource(b, 2)["resourceType"] = "Vaccination" }, true},
		{"medplum's own resource type", func(b map[string]any) {
			b["entry"].([]any)[2].(map[string]any)["resource"] = map[string]any{"resourceType": "Bot", "name": "x"}
		}, true},
		// Required primitives the schema cannot require (they may come as "_status").
		{"observation without status", func(b map[string]any) { delete(resource(b, 1), "status") }, false},
		{"immunization without occurrence", func(b map[string]any) { delete(resource(b, 2), "occurrenceDateTime") }, false},
		{"extension without url", func(b map[string]any) { delete(resource(b, 2)["extension"].([]any)[0].(map[string]any), "url") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b map[string]any
			if err := json.Unmarshal(good, &b); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(b)
			broken, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Validate(broken); err == nil {
				t.Fatalf("broken export passes validation")
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(broken))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sch.Validate(inst) != nil, tt.schemaAlone; got != want {
				t.Fatalf("schema alone refuses = %v, want %v", got, want)
			}
		})
	}
}

// resource returns the resource of entry i of a decoded bundle.
func resource(b map[string]any, i int) map[string]any {
	return b["entry"].([]any)[i].(map[string]any)["resource"].(map[string]any)
}

// TestParseBundleOwnExtensions checks the import side of our extensions: what they hold is
// checked like the rest of a bundle, and errors name the place, not the value.
func TestParseBundleOwnExtensions(t *testing.T) {
	t.Parallel()
	ext := func(url, value string) string {
		return `"extension":[{"url":"` + url + `","valueString":` + value + `}]`
	}
	jsonString := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	fields := func(valueType, name string) string {
		return jsonString(`{"code_system":"","code":"1","name":` + jsonString(name) + `,"value":"1","value_type":"` + valueType +
			`","unit":"","reference_range":"","notes":""}`)
	}
	note := func(extra string) string {
		return `{"resourceType":"DocumentReference","id":"n1","status":"current",` +
			`"type":{"coding":[{"system":"` + systemRecordKind + `","code":"note"}]},"description":"N",` + extra +
			`"content":[{"attachment":{"contentType":"text/plain"}}]}`
	}
	invalidCases := []struct {
		name      string
		resource  string
		wantField string
	}{
		{"record content not JSON", note(ext(extRecordContent, jsonString(marker+"{")) + ","), "/entry/0/resource/extension/0/valueString"},
		{"record content NUL escape", note(ext(extRecordContent, jsonString(`"`+marker+`\u0000"`)) + ","), "/entry/0/resource/extension/0/valueString"},
		{"record content not a string", note(`"extension":[{"url":"` + extRecordContent + `","valueBoolean":true}],`), "/entry/0/resource/extension/0/valueString"},
		{"original reference not an object", `{"resourceType":"Condition","id":"c","subject":{` + ext(extOriginalReference, jsonString(`"`+marker+`"`)) +
			`,"reference":"Patient/x"}}`, "/entry/0/resource/subject/extension/0/valueString"},
		{"test result fields missing", labObs(ext(extTestResult, jsonString(`{"name":"`+marker+`"}`)) + `,"valueString":"x"`), "/entry/0/resource/extension/0/valueString"},
		{"test result value type unknown", labObs(ext(extTestResult, fields(marker, "N")) + `,"valueString":"x"`), "/entry/0/resource/extension/0/valueString"},
		{"record title empty", note(ext(extRecordTitle, `""`) + ","), "/entry/0/resource/extension/0/valueString"},
		{"record title with a newline", note(ext(extRecordTitle, jsonString(marker+"\nB")) + ","), "/entry/0/resource/extension/0/valueString"},
		{"test result name with a control character", labObs(ext(extTestResult, fields("string", marker+"\aB")) + `,"valueString":"x"`), "/entry/0/resource/extension/0/valueString"},
	}
	for _, tt := range invalidCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			batch, err := ParseBundle([]byte(bundleOf(tt.resource)), Options{})
			if batch != nil || phr.ErrorCode(err) != phr.EINVALID {
				t.Fatalf("ParseBundle = %v, %v; want no batch and EINVALID", batch != nil, err)
			}
			if got, want := phr.ErrorField(err), tt.wantField; got != want {
				t.Fatalf("ErrorField = %q, want %q (%v)", got, want, err)
			}
			if strings.Contains(err.Error(), marker) {
				t.Fatalf("error quotes the input: %v", err)
			}
		})
	}

	// Documents that are not our notes stay out, as before, however they are typed.
	for _, doc := range []string{
		`{"resourceType":"DocumentReference","id":"d1","status":"current","content":[{"attachment":{"url":"https://portal.example/x.pdf"}}]}`,
		`{"resourceType":"DocumentReference","id":"d2","type":"` + marker + `"}`,
		strings.Replace(note(""), systemRecordKind, "http://loinc.org", 1),
	} {
		batch, err := ParseBundle([]byte(bundleOf(doc)), Options{})
		if err != nil {
			t.Fatalf("ParseBundle: %v", err)
		}
		if got, want := fmt.Sprint(batch.Skipped), fmt.Sprint([]phr.ImportSkip{sk("DocumentReference", ReasonNotImported, 1)}); got != want {
			t.Fatalf("Skipped = %s, want %s", got, want)
		}
	}
	// Our note without the Content extension is still a note, its resource the Content.
	batch, err := ParseBundle([]byte(bundleOf(note(`"date":"2020-01-02T03:04:05Z",`))), Options{})
	if err != nil {
		t.Fatalf("ParseBundle: %v", err)
	}
	want := &phr.HealthRecord{Kind: phr.KindNote, Title: "N", Content: json.RawMessage(note(`"date":"2020-01-02T03:04:05Z",`)),
		RecordedAt: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), Source: "fhir", SourceID: "n1"}
	if len(batch.HealthRecords) != 1 {
		t.Fatalf("len(HealthRecords) = %d, want 1", len(batch.HealthRecords))
	}
	if d := diffHealthRecord(batch.HealthRecords[0], want); d != "" {
		t.Fatal(d)
	}
}

func BenchmarkBundleWriter(b *testing.B) {
	var batch *phr.ImportBatch
	for _, path := range mustSharedBundles(b) {
		got, err := ParseBundle(mustReadFile(b, path), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if batch == nil || len(got.TestResults)+len(got.HealthRecords) > len(batch.TestResults)+len(batch.HealthRecords) {
			batch = got
		}
	}
	storedResults(batch.TestResults)
	storedRecords(batch.HealthRecords)
	b.ReportAllocs()
	for b.Loop() {
		w, err := NewBundleWriter(io.Discard, testPatient, exportAt)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range batch.TestResults {
			if err := w.TestResult(r); err != nil {
				b.Fatal(err)
			}
		}
		for _, r := range batch.HealthRecords {
			if err := w.HealthRecord(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// storable reports whether s is text the store may hold in a field: valid UTF-8 without NUL
// and, unless any, without control characters but tab, newline and carriage return.
func storable(s string, any bool) bool {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return false
	}
	return any || phr.CheckText("", s, 1<<20, true) == nil
}

// FuzzBundleWriterTestResult writes any result the store could hold and reads it back:
// the export is valid FHIR and the result comes back exactly, unless it has no code or no
// value, which the import skips from anyone.
func FuzzBundleWriterTestResult(f *testing.F) {
	f.Add("http://loinc.org", "2823-3", "Potassium", "5.30", uint8(0), "mmol/L", "3.5–5.1 mmol/L", "a\nb")
	f.Add("urn:x y\a", "K  1", " K ", ".5", uint8(0), " mg ", " r ", " n ")
	f.Add("", " ", "", "Cloudy\n", uint8(1), "u", "", "\t")
	f.Add("s", "c", "n", "", uint8(2), "", "", "")
	f.Fuzz(func(t *testing.T, system, code, name, value string, vt uint8, unit, rng, notes string) {
		r := &phr.TestResult{ID: "0b9f4a61-27d5-4e0e-9a53-8f1d2f3c4b5a", CodeSystem: system, Code: code, Name: name, Value: value,
			ValueType: []string{"quantity", "coded", "string"}[vt%3], Unit: unit, ReferenceRange: rng, Notes: notes,
			EffectiveAt: exportAt, Source: "manual"}
		if !storable(system, true) {
			return
		}
		for _, s := range []string{code, name, value, unit, rng, notes} {
			if !storable(s, false) {
				return
			}
		}
		out := mustExport(t, []*phr.TestResult{r}, nil)
		batch, err := ParseBundle(out, Options{})
		if err != nil {
			t.Fatalf("ParseBundle(export): %v", err)
		}
		_, _, isNumber := splitQuantity(value)
		hasValue := (r.ValueType == "quantity" && isNumber) || cleanText(value) != ""
		switch {
		case !hasValue || code == "":
			if len(batch.TestResults) != 0 {
				t.Fatalf("a result without value or code was imported")
			}
		case len(batch.TestResults) != 1:
			t.Fatalf("len(TestResults) = %d, want 1 (skipped %v)", len(batch.TestResults), batch.Skipped)
		default:
			want := *r
			want.Source, want.SourceID = "fhir", r.ID
			if d := diffStoredTestResult(batch.TestResults[0], &want); d != "" {
				t.Fatal(d)
			}
		}
		fhirschema.MustValid(t, R4ResourceTypes(), out)
	})
}

// FuzzBundleWriterRecord writes any record the store could hold and reads it back exactly.
// The export is valid FHIR too, except where a record from FHIR goes back as the resource
// it came as: that is as valid as its source was.
func FuzzBundleWriterRecord(f *testing.F) {
	f.Add(uint8(0), "Asthma", `{"a":1}`, false, int64(1e18))
	f.Add(uint8(7), " note ", "x\u2028<&>", true, int64(0))
	f.Add(uint8(0), "Condition", `{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"}}`, true, int64(0))
	f.Add(uint8(0), "Condition", `{"resourceType":"Condition","00":"0","code":{"text":"Condition"}}`, true, int64(0))
	f.Fuzz(func(t *testing.T, kind uint8, title, content string, fromFHIR bool, nanos int64) {
		if title == "" || !storable(title, false) || phr.CheckText("", title, maxTitleRunes, false) != nil || !storable(content, false) {
			return
		}
		raw := []byte(content)
		if checkRaw(raw) != nil || !json.Valid(raw) {
			raw, _ = json.Marshal(content)
		}
		r := &phr.HealthRecord{ID: "0b9f4a61-27d5-4e0e-9a53-8f1d2f3c4b5a", Kind: phr.HealthRecordKinds[int(kind)%len(phr.HealthRecordKinds)],
			Title: title, Content: raw, Source: "manual"}
		if nanos != 0 {
			r.RecordedAt = time.Unix(0, nanos)
		}
		if fromFHIR {
			r.Source = "fhir"
		}
		out := mustExport(t, nil, []*phr.HealthRecord{r})
		batch, err := ParseBundle(out, Options{})
		if err != nil {
			t.Fatalf("ParseBundle(export): %v", err)
		}
		if len(batch.HealthRecords) != 1 {
			t.Fatalf("len(HealthRecords) = %d, want 1 (skipped %v)", len(batch.HealthRecords), batch.Skipped)
		}
		want := *r
		want.Source, want.SourceID = "fhir", r.ID
		typ, id, verbatim := verbatimResource(r)
		switch {
		case verbatim && id != "":
			want.SourceID = id
		case verbatim:
			want.SourceID = fullURLFor(typ, r.ID) // the entry's, for want of an id
		}
		if d := diffHealthRecord(batch.HealthRecords[0], &want); d != "" {
			t.Fatal(d)
		}
		if !verbatim {
			fhirschema.MustValid(t, R4ResourceTypes(), out)
		}
	})
}

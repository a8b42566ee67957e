package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// sharedFHIR is the folder of real Synthea bundles beside the repository.
var sharedFHIR = filepath.Join("..", "..", "..", "shared", "testdata", "fhir")

// mustSharedBundles returns the paths of the shared bundles, skipping when they are absent.
func mustSharedBundles(tb testing.TB) []string {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(sharedFHIR, "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 {
		tb.Skipf("no shared FHIR bundles in %s", sharedFHIR)
	}
	return paths
}

// census is what a minimal decoding of a bundle, independent of the package's, finds in it.
type census struct {
	labWithValue int
	labCoded     int
	types        map[string]int
	names        []string // every given and family name of the Patient
}

func mustCensus(tb testing.TB, data []byte) census {
	tb.Helper()
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		tb.Fatal(err)
	}
	c := census{types: map[string]int{}}
	for _, e := range b.Entry {
		r := e.Resource
		typ, _ := r["resourceType"].(string)
		c.types[typ]++
		switch typ {
		case "Patient":
			names, _ := r["name"].([]any)
			for _, n := range names {
				n, _ := n.(map[string]any)
				if f, ok := n["family"].(string); ok {
					c.names = append(c.names, f)
				}
				given, _ := n["given"].([]any)
				for _, g := range given {
					if g, ok := g.(string); ok {
						c.names = append(c.names, g)
					}
				}
			}
		case "Observation":
			lab := isLab(r)
			if !lab {
				continue
			}
			for key := range r {
				if strings.HasPrefix(key, "value") {
					c.labWithValue++
					if key == "valueCodeableConcept" {
						c.labCoded++
					}
				}
			}
		}
	}
	return c
}

// isLab reports whether an Observation has the laboratory category.
func isLab(r map[string]any) bool {
	cats, _ := r["category"].([]any)
	for _, cat := range cats {
		cat, _ := cat.(map[string]any)
		codings, _ := cat["coding"].([]any)
		for _, k := range codings {
			k, _ := k.(map[string]any)
			if k["system"] == "http://terminology.hl7.org/CodeSystem/observation-category" && k["code"] == "laboratory" {
				return true
			}
		}
	}
	return false
}

func TestParseBundleShared(t *testing.T) {
	t.Parallel()
	kindOf := map[string]string{
		"Condition": phr.KindCondition, "MedicationRequest": phr.KindMedication, "Immunization": phr.KindImmunization,
		"Procedure": phr.KindProcedure, "AllergyIntolerance": phr.KindAllergy, "CarePlan": phr.KindCarePlan,
		"DiagnosticReport": phr.KindDiagnosticReport,
	}
	for _, path := range mustSharedBundles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			data := mustReadFile(t, path)
			want := mustCensus(t, data)
			if len(want.names) == 0 {
				t.Fatalf("census found no patient name")
			}
			batch, err := ParseBundle(data, Options{})
			if err != nil {
				t.Fatalf("ParseBundle: %v", err)
			}
			if got, want := len(batch.TestResults), want.labWithValue; got != want {
				t.Fatalf("len(TestResults) = %d, want %d", got, want)
			}
			coded := 0
			for i, r := range batch.TestResults {
				if r.Code == "" || r.Name == "" || r.Value == "" || r.EffectiveAt.IsZero() || r.SourceID == "" {
					t.Fatalf("TestResults[%d] lacks Code, Name, Value, EffectiveAt or SourceID", i)
				}
				if r.ValueType == "quantity" && r.Unit == "" {
					t.Fatalf("TestResults[%d] is a quantity without unit", i)
				}
				if r.ValueType == "coded" {
					coded++
				}
			}
			if got, want := coded, want.labCoded; got != want {
				t.Fatalf("coded results = %d, want %d", got, want)
			}
			if strings.HasPrefix(filepath.Base(path), "Dirk_Kuhlman") && coded == 0 {
				t.Fatalf("Dirk_Kuhlman: no coded (urinalysis) results")
			}
			gotKinds := map[string]int{}
			for _, r := range batch.HealthRecords {
				gotKinds[r.Kind]++
				if !json.Valid(r.Content) || r.Title == "" || r.RecordedAt.IsZero() {
					t.Fatalf("health record %s lacks valid Content, Title or RecordedAt", r.SourceID)
				}
			}
			for typ, kind := range kindOf {
				if got, want := gotKinds[kind], want.types[typ]; got != want {
					t.Fatalf("%s records = %d, want %d", kind, got, want)
				}
			}
			for _, s := range batch.Skipped {
				for _, n := range want.names {
					if strings.Contains(s.Reason, n) || strings.Contains(s.ResourceType, n) {
						t.Fatalf("a skip names the patient")
					}
				}
			}
		})
	}
}

// TestParseBundleSharedBroken breaks real bundles the way a faulty exporter would and checks
// that the error names the place but never the patient.
func TestParseBundleSharedBroken(t *testing.T) {
	t.Parallel()
	paths := mustSharedBundles(t)
	tests := []struct {
		name string
		// breakIt changes the decoded bundle, putting name (a patient name) into it.
		breakIt   func(entries []any, name string) []any
		wantField string
	}{
		// The patient's name as a lab result's value: a string where a number belongs.
		{"name as a quantity value", func(entries []any, name string) []any {
			for _, e := range entries {
				r := e.(map[string]any)["resource"].(map[string]any)
				if q, ok := r["valueQuantity"].(map[string]any); ok && isLab(r) {
					q["value"] = name
					return entries
				}
			}
			return entries
		}, "valueQuantity/value"},
		// The Patient twice: two people's data in one upload.
		{"patient twice", func(entries []any, name string) []any {
			for _, e := range entries {
				if e.(map[string]any)["resource"].(map[string]any)["resourceType"] == "Patient" {
					return append(entries, e)
				}
			}
			return entries
		}, "/resource"},
		// The name as a lab result's date.
		{"name as a date", func(entries []any, name string) []any {
			for _, e := range entries {
				r := e.(map[string]any)["resource"].(map[string]any)
				if _, ok := r["effectiveDateTime"]; ok && isLab(r) {
					r["effectiveDateTime"] = name
					return entries
				}
			}
			return entries
		}, "effectiveDateTime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, path := range paths {
				data := mustReadFile(t, path)
				names := mustCensus(t, data).names
				var b map[string]any
				if err := json.Unmarshal(data, &b); err != nil {
					t.Fatal(err)
				}
				b["entry"] = tt.breakIt(b["entry"].([]any), strings.Join(names, " "))
				broken, err := json.Marshal(b)
				if err != nil {
					t.Fatal(err)
				}
				batch, err := ParseBundle(broken, Options{})
				if batch != nil || phr.ErrorCode(err) != phr.EINVALID {
					t.Fatalf("%s: ParseBundle = %v, %v; want no batch and EINVALID", filepath.Base(path), batch != nil, err)
				}
				if !strings.HasSuffix(phr.ErrorField(err), tt.wantField) {
					t.Fatalf("ErrorField = %q, want suffix %q", phr.ErrorField(err), tt.wantField)
				}
				for _, n := range names {
					if strings.Contains(err.Error(), n) {
						t.Fatalf("error names the patient")
					}
				}
			}
		})
	}
}

func BenchmarkParseBundle(b *testing.B) {
	var largest []byte
	for _, path := range mustSharedBundles(b) {
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		if fi.Size() > int64(len(largest)) {
			largest = mustReadFile(b, path)
		}
	}
	b.SetBytes(int64(len(largest)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBundle(largest, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

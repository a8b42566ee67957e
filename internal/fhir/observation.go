package fhir

import (
	"strings"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Code systems the mapping recognises.
const (
	systemLOINC = "http://loinc.org"
	// systemObservationCategory is R4's; systemObservationCategoryDSTU is the URL that STU3-era
	// portals still send for the same codes.
	systemObservationCategory     = "http://terminology.hl7.org/CodeSystem/observation-category"
	systemObservationCategoryDSTU = "http://hl7.org/fhir/observation-category"
)

// kindTestResult keys the duplicate check of test results apart from the record kinds.
const kindTestResult = "test_result"

// valueKeys are Observation's value[x] members.
var valueKeys = []string{"valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean",
	"valueInteger", "valueRange", "valueRatio", "valueSampledData", "valueTime", "valueDateTime",
	"valuePeriod"}

// comparators are Quantity.comparator's codes; a "<0.5" result is not a "0.5" result.
var comparators = map[string]bool{"<": true, "<=": true, ">=": true, ">": true}

func (b *builder) addObservation(e *entry, r object) error {
	categories, err := r.objs("category")
	if err != nil {
		return err
	}
	lab := false
	for _, c := range categories {
		cc, err := conceptOf(c)
		if err != nil {
			return err
		}
		if cc.has(systemObservationCategory, "laboratory") || cc.has(systemObservationCategoryDSTU, "laboratory") {
			lab = true
		}
	}
	if !lab {
		b.skip(e.typ, ReasonNotLab)
		return nil
	}

	// Read and check everything first: a lab result that will be skipped must still be
	// well formed, or the bundle as a whole is not.
	status, err := r.str("status")
	if err != nil {
		return err
	}
	other, err := b.aboutOtherPatient(r, "subject")
	if err != nil {
		return err
	}
	code, ok, err := readConcept(r, "code")
	if err != nil {
		return err
	}
	if !ok {
		return invalid(r.path("code"), "is required")
	}
	tr := &phr.TestResult{Source: Source}
	if k, ok := testCoding(code); ok {
		tr.CodeSystem, tr.Code = k.system, cleanLine(k.code)
	}
	tr.Name = code.label()
	if tr.Name == "" {
		tr.Name = tr.Code
	}
	hasValue, supported, err := readValue(r, tr)
	if err != nil {
		return err
	}
	if tr.EffectiveAt, err = firstDate(r, dateTime("effectiveDateTime"), periodStart("effectivePeriod"),
		dateTime("effectiveInstant"), dateTime("issued")); err != nil {
		return err
	}
	if tr.ReferenceRange, err = readReferenceRange(r); err != nil {
		return err
	}
	if tr.Notes, err = readNotes(r); err != nil {
		return err
	}
	if tr.SourceID, err = sourceID(e, r); err != nil {
		return err
	}
	// BundleWriter keeps in an extension what the elements above could not carry exactly.
	if err := restoreTestResult(r, tr); err != nil {
		return err
	}

	switch {
	case status == "entered-in-error":
		b.skip(e.typ, ReasonEnteredInErr)
	case other:
		b.skip(e.typ, ReasonOtherPatient)
	case !supported:
		b.skip(e.typ, ReasonValueType)
	case !hasValue:
		b.skip(e.typ, ReasonNoValue)
	case tr.Code == "":
		b.skip(e.typ, ReasonNoCode)
	case tr.SourceID == "":
		b.skip(e.typ, ReasonNoID)
	case !b.claim(kindTestResult, tr.SourceID):
		b.skip(e.typ, ReasonDuplicate)
	default:
		b.batch.TestResults = append(b.batch.TestResults, tr)
	}
	return nil
}

// testCoding picks the coding that names the test: LOINC when present, else the first
// coding that has a code.
func testCoding(c concept) (coding, bool) {
	for _, k := range c.codings {
		if k.system == systemLOINC && strings.TrimSpace(k.code) != "" {
			return k, true
		}
	}
	for _, k := range c.codings {
		if strings.TrimSpace(k.code) != "" {
			return k, true
		}
	}
	return coding{}, false
}

// readValue fills tr's Value, ValueType and Unit from value[x]. hasValue is false when there
// is no value to show; supported is false for value types a test result cannot hold.
func readValue(r object, tr *phr.TestResult) (hasValue, supported bool, err error) {
	key := ""
	for _, k := range valueKeys {
		if r.has(k) {
			if key != "" {
				return false, false, invalid(r.at, "must have at most one value[x]")
			}
			key = k
		}
	}
	switch key {
	case "":
		return false, true, nil
	case "valueQuantity":
		q, _, err := r.obj(key)
		if err != nil {
			return false, false, err
		}
		n, unit, ok, err := readQuantity(q)
		if err != nil || !ok {
			return false, true, err
		}
		cmp, err := q.str("comparator")
		if err != nil {
			return false, false, err
		}
		if cmp != "" && !comparators[cmp] {
			return false, false, invalid(q.path("comparator"), "must be one of <, <=, >=, >")
		}
		tr.Value, tr.ValueType, tr.Unit = cmp+n, "quantity", unit
	case "valueCodeableConcept":
		cc, _, err := readConcept(r, key)
		if err != nil {
			return false, false, err
		}
		tr.Value, tr.ValueType = cc.label(), "coded"
		if tr.Value == "" {
			for _, k := range cc.codings {
				if c := cleanLine(k.code); c != "" {
					tr.Value = c
					break
				}
			}
		}
	case "valueString", "valueTime":
		s, err := r.str(key)
		if err != nil {
			return false, false, err
		}
		tr.Value, tr.ValueType = cleanText(s), "string"
	case "valueDateTime":
		t, _, err := readDateTime(r, key)
		if err != nil {
			return false, false, err
		}
		tr.Value, tr.ValueType = t.Format(time.RFC3339), "string"
	case "valueBoolean":
		v, _, err := r.boolean(key)
		if err != nil {
			return false, false, err
		}
		tr.Value, tr.ValueType = "false", "string"
		if v {
			tr.Value = "true"
		}
	case "valueInteger":
		n, _, err := r.num(key)
		if err != nil {
			return false, false, err
		}
		if strings.ContainsAny(string(n), ".eE") {
			return false, false, invalid(r.path(key), "must be an integer")
		}
		tr.Value, tr.ValueType = string(n), "quantity"
	default:
		if _, _, err := r.obj(key); err != nil {
			return false, false, err
		}
		return false, false, nil
	}
	return tr.Value != "", true, nil
}

// readQuantity reads a Quantity's value as the lab wrote it and its unit (the human unit,
// else the coded one); ok is false when it has no value.
func readQuantity(q object) (value, unit string, ok bool, err error) {
	n, ok, err := q.num("value")
	if err != nil || !ok {
		return "", "", false, err
	}
	u, err := q.str("unit")
	if err != nil {
		return "", "", false, err
	}
	c, err := q.str("code")
	if err != nil {
		return "", "", false, err
	}
	unit = cleanLine(u)
	if unit == "" {
		unit = cleanLine(c)
	}
	return string(n), unit, true, nil
}

// readReferenceRange renders the first referenceRange as "low–high unit" (or "≥ low",
// "≤ high"), else its text; "" when there is none.
func readReferenceRange(r object) (string, error) {
	ranges, err := r.objs("referenceRange")
	if err != nil || len(ranges) == 0 {
		return "", err
	}
	rr := ranges[0]
	var low, high, unit string
	var hasLow, hasHigh bool
	for _, side := range []struct {
		key   string
		value *string
		has   *bool
	}{{"low", &low, &hasLow}, {"high", &high, &hasHigh}} {
		q, ok, err := rr.obj(side.key)
		if err != nil {
			return "", err
		}
		if !ok {
			continue
		}
		v, u, ok, err := readQuantity(q)
		if err != nil {
			return "", err
		}
		*side.value, *side.has = v, ok
		if unit == "" {
			unit = u
		}
	}
	text, err := rr.str("text")
	if err != nil {
		return "", err
	}
	var s string
	switch {
	case hasLow && hasHigh:
		s = low + "–" + high
	case hasLow:
		s = "≥ " + low
	case hasHigh:
		s = "≤ " + high
	default:
		return cleanLine(text), nil
	}
	if unit != "" {
		s += " " + unit
	}
	return s, nil
}

// readNotes joins the texts of note[], one per line.
func readNotes(r object) (string, error) {
	notes, err := r.objs("note")
	if err != nil {
		return "", err
	}
	var texts []string
	for _, n := range notes {
		t, err := n.str("text")
		if err != nil {
			return "", err
		}
		if t = cleanText(t); t != "" {
			texts = append(texts, t)
		}
	}
	return strings.Join(texts, "\n"), nil
}

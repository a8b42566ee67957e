package fhir

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// VitalNexa's own FHIR URLs. Exports in users' hands carry them, so they never change.
const (
	// extRecordContent holds, as JSON text, the Content of a record that is not itself the
	// FHIR resource written for it (a record the user typed, or one changed since import).
	extRecordContent = "https://vitalnexa.dev/fhir/StructureDefinition/record-content"
	// extRecordTitle holds the Title of such a record when the resource's own title
	// element cannot carry it exactly (the import trims labels).
	extRecordTitle = "https://vitalnexa.dev/fhir/StructureDefinition/record-title"
	// extTestResult holds, as JSON text, the fields of a test result that the Observation's
	// own elements cannot carry exactly (see testResultFields).
	extTestResult = "https://vitalnexa.dev/fhir/StructureDefinition/test-result"
	// extOriginalReference sits on a subject reference the export pointed at its Patient,
	// and holds, as JSON text, the reference the stored resource had.
	extOriginalReference = "https://vitalnexa.dev/fhir/StructureDefinition/original-reference"
	// systemRecordKind codes a DocumentReference as one of our notes.
	systemRecordKind = "https://vitalnexa.dev/fhir/CodeSystem/record-kind"
)

// Code systems of the resources the writer makes.
const (
	systemUCUM             = "http://unitsofmeasure.org"
	systemDataAbsentReason = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
)

// exportNamespace names the urn:uuid fullUrls derived from ids that are not UUIDs.
var exportNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://vitalnexa.dev/fhir/export"))

// Patient is the account holder, the one Patient of an export. Every field but ID is PHI.
type Patient struct {
	ID          string // the account id: the Patient's id, and through it its fullUrl
	FullName    string
	DateOfBirth string // YYYY-MM-DD, or "" when unknown
	Email       string
}

// PatientOf is the Patient of u's export.
func PatientOf(u *phr.User) Patient {
	return Patient{ID: u.ID, FullName: u.FullName, DateOfBirth: u.DateOfBirth, Email: u.Email}
}

// BundleWriter writes a FHIR R4 Bundle (type "collection") to w entry by entry, so a large
// account never sits in memory: it holds one entry at a time and writes it whole. The
// output depends only on what it is given, so the same account exports to the same bytes.
//
// Test results become laboratory Observations. A health record imported from FHIR is
// written back as the resource it came from; any other record (one the user typed, or one
// changed since its import) becomes a resource of its kind's type (kind "note": a
// DocumentReference coded with our record-kind system) that carries the Content in an
// extension. ParseBundle reads the output back to the same results and records: same
// fields, Content and SourceID. An empty SourceID (the store keeps only a keyed hash of it)
// comes back as the resource's id where the stored resource has one, else the item's ID,
// or its entry's fullUrl (urn:uuid:<ID>) for a resource from FHIR that had no id.
//
// Errors never quote a value: an item the writer cannot express is refused before any of
// it is written, with the rule it breaks (and its ID, when that is a UUID), and the writer
// goes on; an error of w ends the writer.
type BundleWriter struct {
	w       io.Writer
	buf     bytes.Buffer // the entry being written
	patient string       // the Patient's fullUrl, which every written resource refers to
	entries bool         // an entry was written: the next one needs a comma
	closed  bool
	err     error // the first error of w
}

// NewBundleWriter writes the opening of the Bundle, stamped at, and the Patient entry.
func NewBundleWriter(w io.Writer, p Patient, at time.Time) (*BundleWriter, error) {
	stamp, err := formatTime(at)
	if err != nil || at.IsZero() {
		return nil, errors.New("fhir export: bundle timestamp must be a time in the years 1 to 9999")
	}
	patient, err := patientOf(p)
	if err != nil {
		return nil, err
	}
	b := &BundleWriter{w: w, patient: fullURLFor("Patient", p.ID)}
	b.buf.WriteString(`{"resourceType":"Bundle","type":"collection","timestamp":`)
	appendJSON(&b.buf, stamp)
	b.buf.WriteString(`,"entry":[`)
	b.appendEntry(b.patient, func(buf *bytes.Buffer) { appendJSON(buf, patient) })
	if err := b.flush(); err != nil {
		return nil, err
	}
	return b, nil
}

// TestResult writes r as a laboratory Observation. r needs an ID unless it has a SourceID.
func (b *BundleWriter) TestResult(r *phr.TestResult) error {
	if err := b.usable(); err != nil {
		return err
	}
	id, fullURL, err := identity("Observation", r.SourceID, r.ID)
	if err != nil {
		return fmt.Errorf("fhir export: %s: %w", item("test result", r.ID), err)
	}
	obs, err := b.observation(r, id)
	if err != nil {
		return fmt.Errorf("fhir export: %s: %w", item("test result", r.ID), err)
	}
	b.appendEntry(fullURL, func(buf *bytes.Buffer) { appendJSON(buf, obs) })
	return b.flush()
}

// HealthRecord writes r as the FHIR resource of its kind. r needs an ID unless it has a
// SourceID.
func (b *BundleWriter) HealthRecord(r *phr.HealthRecord) error {
	if err := b.usable(); err != nil {
		return err
	}
	if typ, id, ok := verbatimResource(r); ok {
		fullURL := fullURLFor(typ, id)
		if id == "" {
			var err error
			if _, fullURL, err = identity(typ, r.SourceID, r.ID); err != nil {
				return fmt.Errorf("fhir export: %s: %w", item("health record", r.ID), err)
			}
		}
		subject := recordSpecs[typ].subject
		b.appendEntry(fullURL, func(buf *bytes.Buffer) { b.appendVerbatim(buf, r.Content, subject) })
		return b.flush()
	}
	res, fullURL, err := b.typedRecord(r)
	if err != nil {
		return fmt.Errorf("fhir export: %s: %w", item("health record", r.ID), err)
	}
	b.appendEntry(fullURL, func(buf *bytes.Buffer) { appendJSON(buf, res) })
	return b.flush()
}

// Close writes the end of the Bundle. The entries written before it are all the Bundle
// holds; the writer takes nothing after it.
func (b *BundleWriter) Close() error {
	if err := b.usable(); err != nil {
		return err
	}
	b.closed = true
	b.buf.WriteString("]}")
	return b.flush()
}

// item names an item in an error by its id when that is a UUID, as the store's are: any
// other id could be text of any kind.
func item(what, id string) string {
	if uuid.Validate(id) == nil {
		return what + " " + id
	}
	return what
}

func (b *BundleWriter) usable() error {
	switch {
	case b.err != nil:
		return b.err
	case b.closed:
		return errors.New("fhir export: bundle writer is closed")
	}
	return nil
}

// appendEntry adds one Bundle.entry to the buffer; write puts the resource.
func (b *BundleWriter) appendEntry(fullURL string, write func(*bytes.Buffer)) {
	if b.entries {
		b.buf.WriteByte(',')
	}
	b.entries = true
	b.buf.WriteString(`{"fullUrl":`)
	appendJSON(&b.buf, fullURL)
	b.buf.WriteString(`,"resource":`)
	write(&b.buf)
	b.buf.WriteByte('}')
}

// flush hands the buffer to w. A failed write ends the writer: the Bundle is cut and no
// later entry may follow.
func (b *BundleWriter) flush() error {
	_, err := b.w.Write(b.buf.Bytes())
	b.buf.Reset()
	if err != nil {
		b.err = fmt.Errorf("fhir export: %w", err)
		return b.err
	}
	return nil
}

// appendJSON appends v as JSON. HTML characters stay as they are: an export is read by
// people and programs, not rendered by browsers. v is one of this file's types, which
// always encode.
func appendJSON(buf *bytes.Buffer, v any) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("fhir: export type does not encode: " + err.Error())
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline
}

// identity returns the resource id and entry fullUrl from which ParseBundle reads back
// sourceID as the SourceID; an empty sourceID (the store does not return it) makes the
// item's own id the resource id. The fullUrl is urn:uuid:<id> for a UUID id (as Synthea
// writes it, so that references between its resources resolve again), else a UUID derived
// from the type and id; a sourceID that is not a FHIR id was a fullUrl, and stays one.
func identity(typ, sourceID, itemID string) (id, fullURL string, err error) {
	switch {
	case sourceID != "" && fhirID.MatchString(sourceID):
		return sourceID, fullURLFor(typ, sourceID), nil
	case sourceID != "" && validURI(sourceID):
		return "", sourceID, nil
	case sourceID != "":
		return "", "", errors.New("source id is neither a FHIR id nor a URI")
	case fhirID.MatchString(itemID):
		return itemID, fullURLFor(typ, itemID), nil
	}
	return "", "", errors.New("has neither a source id nor an id that is a FHIR id")
}

// fullURLFor is the urn:uuid fullUrl of the resource typ/id.
func fullURLFor(typ, id string) string {
	if u, err := uuid.Parse(id); err == nil && u.String() == id {
		return "urn:uuid:" + id
	}
	return "urn:uuid:" + uuid.NewSHA1(exportNamespace, []byte(typ+"/"+id)).String()
}

// formatTime writes t as a FHIR instant (also a valid dateTime) in UTC, to the nanosecond:
// parseDateTime reads back the same instant. FHIR years run from 1 to 9999.
func formatTime(t time.Time) (string, error) {
	t = t.UTC()
	if t.Year() < 1 || t.Year() > 9999 {
		return "", errors.New("time is outside the years 1 to 9999")
	}
	return t.Format(time.RFC3339Nano), nil
}

// optionalTime is formatTime for a time that may be absent (zero): "" then.
func optionalTime(t time.Time) (string, error) {
	if t.IsZero() {
		return "", nil
	}
	return formatTime(t)
}

// birthDate is the FHIR date form of a date of birth.
var birthDate = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

// The types below are the JSON of what the writer makes. encoding/json leaves out what a
// resource does not use and writes the members in field order, so output is deterministic.

type outPatient struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id,omitempty"`
	Name         []outName    `json:"name,omitempty"`
	Telecom      []outContact `json:"telecom,omitempty"`
	BirthDate    string       `json:"birthDate,omitempty"`
}

type outName struct {
	Text string `json:"text"`
}

type outContact struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// outResource holds the elements the writer sets in any of the resources it makes.
type outResource struct {
	ResourceType         string            `json:"resourceType"`
	ID                   string            `json:"id,omitempty"`
	Extension            []outExtension    `json:"extension,omitempty"`
	Status               string            `json:"status,omitempty"`
	Intent               string            `json:"intent,omitempty"`
	Category             []outConcept      `json:"category,omitempty"`
	Type                 *outConcept       `json:"type,omitempty"`
	Code                 *outConcept       `json:"code,omitempty"`
	VaccineCode          *outConcept       `json:"vaccineCode,omitempty"`
	ReportedBoolean      bool              `json:"reportedBoolean,omitempty"`
	Medication           *outConcept       `json:"medicationCodeableConcept,omitempty"`
	Title                string            `json:"title,omitempty"`
	Subject              *outReference     `json:"subject,omitempty"`
	Patient              *outReference     `json:"patient,omitempty"`
	EffectiveDateTime    string            `json:"effectiveDateTime,omitempty"`
	OccurrenceDateTime   string            `json:"occurrenceDateTime,omitempty"`
	OccurrenceString     string            `json:"occurrenceString,omitempty"`
	PerformedDateTime    string            `json:"performedDateTime,omitempty"`
	AuthoredOn           string            `json:"authoredOn,omitempty"`
	RecordedDate         string            `json:"recordedDate,omitempty"`
	Created              string            `json:"created,omitempty"`
	Date                 string            `json:"date,omitempty"`
	Description          string            `json:"description,omitempty"`
	ValueQuantity        *outQuantity      `json:"valueQuantity,omitempty"`
	ValueCodeableConcept *outConcept       `json:"valueCodeableConcept,omitempty"`
	ValueString          string            `json:"valueString,omitempty"`
	DataAbsentReason     *outConcept       `json:"dataAbsentReason,omitempty"`
	Note                 []outText         `json:"note,omitempty"`
	ReferenceRange       []outText         `json:"referenceRange,omitempty"`
	Content              []outDocumentPart `json:"content,omitempty"`
}

type outExtension struct {
	URL         string `json:"url"`
	ValueString string `json:"valueString"`
}

type outCoding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

type outConcept struct {
	Coding []outCoding `json:"coding,omitempty"`
	Text   string      `json:"text,omitempty"`
}

type outReference struct {
	Extension []outExtension `json:"extension,omitempty"`
	Reference string         `json:"reference"`
}

type outQuantity struct {
	Value      json.Number `json:"value"`
	Comparator string      `json:"comparator,omitempty"`
	Unit       string      `json:"unit,omitempty"`
	System     string      `json:"system,omitempty"`
	Code       string      `json:"code,omitempty"`
}

// outText is an Annotation, or a referenceRange given by its text only.
type outText struct {
	Text string `json:"text"`
}

type outDocumentPart struct {
	Attachment outAttachment `json:"attachment"`
}

type outAttachment struct {
	ContentType string `json:"contentType"`
	Data        string `json:"data"`
}

// patientOf is the Patient resource of p. FHIR strings hold no control characters, so the
// name and email are cleaned the way the importer cleans labels.
func patientOf(p Patient) (*outPatient, error) {
	out := &outPatient{ResourceType: "Patient"}
	if fhirID.MatchString(p.ID) {
		out.ID = p.ID
	}
	if name := cleanLine(p.FullName); name != "" {
		out.Name = []outName{{Text: name}}
	}
	if email := cleanLine(p.Email); email != "" {
		out.Telecom = []outContact{{System: "email", Value: email}}
	}
	if p.DateOfBirth != "" {
		if _, err := time.Parse(time.DateOnly, p.DateOfBirth); err != nil || !birthDate.MatchString(p.DateOfBirth) {
			return nil, errors.New("fhir export: patient date of birth must be a date YYYY-MM-DD")
		}
		out.BirthDate = p.DateOfBirth
	}
	return out, nil
}

// valueTypes are the ValueTypes of phr.TestResult.
var valueTypes = map[string]bool{"quantity": true, "coded": true, "string": true}

// fhirDecimal is a JSON number, which is what FHIR's decimal is in JSON.
var fhirDecimal = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// observation is r as a laboratory Observation, made of the elements ParseBundle reads: code
// (system, code, and the name as display and text), value[x] by ValueType, effectiveDateTime,
// referenceRange text and a note. Text goes in cleaned as the importer cleans it; when that,
// or FHIR's rules, change any field, extTestResult carries all of them exactly. The store
// keeps no status, so it is "unknown" rather than a guessed "final".
func (b *BundleWriter) observation(r *phr.TestResult, id string) (*outResource, error) {
	if !valueTypes[r.ValueType] {
		return nil, errors.New("value type is not quantity, coded or string")
	}
	effective, err := optionalTime(r.EffectiveAt)
	if err != nil {
		return nil, fmt.Errorf("effective time: %w", err)
	}
	o := &outResource{
		ResourceType: "Observation", ID: id, Status: "unknown",
		Category:          []outConcept{{Coding: []outCoding{{System: systemObservationCategory, Code: "laboratory", Display: "Laboratory"}}}},
		Subject:           &outReference{Reference: b.patient},
		EffectiveDateTime: effective,
	}
	// read is what ParseBundle will take from the elements written.
	var read phr.TestResult
	read.Code = fhirCode(r.Code)
	if read.Code != "" && fhirURI(r.CodeSystem) {
		read.CodeSystem = r.CodeSystem
	}
	name := cleanLine(r.Name)
	o.Code = &outConcept{Text: name}
	if read.Code != "" {
		o.Code.Coding = []outCoding{{System: read.CodeSystem, Code: read.Code, Display: name}}
	}
	read.Name = name
	if read.Name == "" {
		read.Name = read.Code
	}
	if name == "" && read.Code == "" {
		o.Code.Text = "Laboratory test" // code is required; without a code the import skips it
	}
	read.Value, read.ValueType, read.Unit = writeValue(o, r)
	if rng := cleanLine(r.ReferenceRange); rng != "" {
		o.ReferenceRange = []outText{{Text: rng}}
		read.ReferenceRange = rng
	}
	if notes := cleanText(r.Notes); notes != "" {
		o.Note = []outText{{Text: notes}}
		read.Notes = notes
	}
	if exact := testResultFieldsOf(r); testResultFieldsOf(&read) != exact {
		text, err := json.Marshal(exact)
		if err != nil {
			return nil, err
		}
		o.Extension = []outExtension{{URL: extTestResult, ValueString: string(text)}}
	}
	return o, nil
}

// writeValue sets o's value[x] from r and returns what ParseBundle will read of it. A
// quantity is a number, with a comparator prefix ("<0.5") when the lab gave one; one that
// is not goes in as a string. Its unit is also given as the UCUM code when it could be
// one (printable ASCII without spaces): the store keeps only the unit's text, and the
// units of the sources we import (Synthea's among them) are UCUM. A value that is empty
// once cleaned is absent, which FHIR says with dataAbsentReason.
func writeValue(o *outResource, r *phr.TestResult) (value, valueType, unit string) {
	switch r.ValueType {
	case "quantity":
		if cmp, n, ok := splitQuantity(r.Value); ok {
			q := &outQuantity{Value: json.Number(n), Comparator: cmp, Unit: cleanLine(r.Unit)}
			if ucumLike(q.Unit) {
				q.System, q.Code = systemUCUM, q.Unit
			}
			o.ValueQuantity = q
			return r.Value, "quantity", q.Unit
		}
	case "coded":
		if v := cleanLine(r.Value); v != "" {
			o.ValueCodeableConcept = &outConcept{Text: v}
			return v, "coded", ""
		}
	}
	if v := cleanText(r.Value); v != "" {
		o.ValueString = v
		return v, "string", ""
	}
	o.DataAbsentReason = &outConcept{Coding: []outCoding{{System: systemDataAbsentReason, Code: "unknown", Display: "Unknown"}}}
	return "", "", ""
}

// splitQuantity splits a quantity value into its comparator and its number.
func splitQuantity(v string) (cmp, n string, ok bool) {
	for _, c := range []string{"<=", ">=", "<", ">"} {
		if strings.HasPrefix(v, c) {
			cmp, v = c, v[len(c):]
			break
		}
	}
	return cmp, v, fhirDecimal.MatchString(v)
}

// fhirCode is s as a FHIR code (no whitespace but single inner spaces), "" when nothing is
// left.
func fhirCode(s string) string { return strings.Join(strings.Fields(cleanLine(s)), " ") }

// fhirURI reports whether s may stand as a FHIR uri: no whitespace, no control character.
func fhirURI(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// ucumLike reports whether unit could be a UCUM code: printable ASCII without spaces.
func ucumLike(unit string) bool {
	if unit == "" {
		return false
	}
	for i := 0; i < len(unit); i++ {
		if unit[i] <= ' ' || unit[i] >= 0x7f {
			return false
		}
	}
	return true
}

// testResultFields are the fields of a test result that a person sees, as extTestResult
// holds them.
type testResultFields struct {
	CodeSystem     string `json:"code_system"`
	Code           string `json:"code"`
	Name           string `json:"name"`
	Value          string `json:"value"`
	ValueType      string `json:"value_type"`
	Unit           string `json:"unit"`
	ReferenceRange string `json:"reference_range"`
	Notes          string `json:"notes"`
}

func testResultFieldsOf(r *phr.TestResult) testResultFields {
	return testResultFields{CodeSystem: r.CodeSystem, Code: r.Code, Name: r.Name, Value: r.Value, ValueType: r.ValueType,
		Unit: r.Unit, ReferenceRange: r.ReferenceRange, Notes: r.Notes}
}

// verbatimResource returns the resource type and id ("" when it has none) of r's Content
// when r came from FHIR and its Content is still a resource that ParseBundle maps back to
// r exactly: same kind, title, date and identity, nothing of ours that the import would
// act on, and well formed where the import looks. ok is false otherwise: the record was
// typed by the user or changed after its import, and is written as a typed record.
func verbatimResource(r *phr.HealthRecord) (typ, id string, ok bool) {
	if r.Source != Source || checkRaw(r.Content) != nil || !json.Valid(r.Content) {
		return "", "", false
	}
	var compact bytes.Buffer
	if json.Compact(&compact, r.Content) != nil || !bytes.Equal(compact.Bytes(), r.Content) {
		return "", "", false // the import keeps resources compact: this one was changed
	}
	v, err := decodeAny(r.Content, "")
	if err != nil {
		return "", "", false
	}
	res, err := asObject(v, "")
	if err != nil {
		return "", "", false
	}
	if typ, err = res.str("resourceType"); err != nil {
		return "", "", false
	}
	spec, known := recordSpecs[typ]
	if !known || spec.kind != r.Kind || (spec.accepts != nil && !spec.accepts(res)) || !readsBackAs(res, spec, r) {
		return "", "", false
	}
	id, _ = res.str("id")
	return typ, id, true
}

// readsBackAs reports whether ParseBundle takes res, written with its subject pointed at
// the export's Patient, as the record r.
func readsBackAs(res object, spec recordSpec, r *phr.HealthRecord) bool {
	inError, err := spec.inError(res)
	if err != nil || inError {
		return false
	}
	title, err := spec.title(res)
	if err != nil {
		return false
	}
	if title == "" {
		title = spec.generic
	}
	at, err := spec.when(res)
	if err != nil || truncate(title, maxTitleRunes) != r.Title || !at.Equal(r.RecordedAt) {
		return false
	}
	for _, url := range []string{extRecordContent, extRecordTitle} {
		if has, err := hasExtension(res, url); err != nil || has {
			return false
		}
	}
	if res.has(spec.subject) {
		sub, _, err := res.obj(spec.subject)
		if err != nil {
			return false
		}
		if _, err := sub.str("reference"); err != nil {
			return false
		}
		if has, err := hasExtension(sub, extOriginalReference); err != nil || has {
			return false
		}
	}
	if !res.has("id") {
		return r.SourceID == "" || (validURI(r.SourceID) && !fhirID.MatchString(r.SourceID))
	}
	id, err := res.str("id")
	return err == nil && fhirID.MatchString(id) && (r.SourceID == "" || r.SourceID == id)
}

// hasExtension reports whether o has an extension with url.
func hasExtension(o object, url string) (bool, error) {
	_, _, ok, err := extensionString(o, url)
	return ok, err
}

// appendVerbatim appends the resource content, member by member as it is, except that a
// subject reference to anyone but the export's Patient is pointed at the Patient, keeping
// the original in extOriginalReference.
//
// Why rewrite: the stored resource still refers to the Patient of the bundle it came from
// (a urn:uuid of that bundle, or a server's Patient/<id>), which the export does not hold;
// left alone, ParseBundle would take such a record for another person's and skip it. No
// Patient fullUrl can be chosen to match instead: records imported from different bundles
// refer to different patients, and the Patient entry is written before any record is
// seen. ParseBundle puts the original back (restoreReferences), so Content round-trips
// byte for byte.
func (b *BundleWriter) appendVerbatim(buf *bytes.Buffer, content []byte, subject string) {
	buf.WriteByte('{')
	first := true
	eachMember(content, func(rawKey []byte, key string, value json.RawMessage) bool {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.Write(rawKey)
		buf.WriteByte(':')
		if key == subject && b.foreignReference(value) {
			appendJSON(buf, outReference{
				Extension: []outExtension{{URL: extOriginalReference, ValueString: string(value)}},
				Reference: b.patient,
			})
		} else {
			buf.Write(value)
		}
		return true
	})
	buf.WriteByte('}')
}

// foreignReference reports whether raw, a Reference, points at something other than the
// export's Patient: a reference ParseBundle would check against the bundle's Patient.
func (b *BundleWriter) foreignReference(raw json.RawMessage) bool {
	m, ok := splitObject(raw)
	if !ok {
		return false
	}
	ref, ok := unquote(m["reference"])
	return ok && ref != "" && !strings.HasPrefix(ref, "#") && ref != b.patient
}

// typedRecord makes the resource of r's kind, with the Title and RecordedAt where
// recordSpecs reads them and the Content in extRecordContent, unchanged.
func (b *BundleWriter) typedRecord(r *phr.HealthRecord) (*outResource, string, error) {
	typ, ok := kindTypes[r.Kind]
	if !ok {
		return nil, "", errors.New("kind is not a kind of health record")
	}
	if !json.Valid(r.Content) {
		return nil, "", errors.New("content is not a JSON value")
	}
	id, fullURL, err := identity(typ, r.SourceID, r.ID)
	if err != nil {
		return nil, "", err
	}
	at, err := optionalTime(r.RecordedAt)
	if err != nil {
		return nil, "", fmt.Errorf("recorded time: %w", err)
	}
	title := cleanLine(r.Title)
	if title == "" {
		title = recordSpecs[typ].generic
	}
	res := &outResource{ResourceType: typ, ID: id,
		Extension: []outExtension{{URL: extRecordContent, ValueString: string(r.Content)}}}
	if title != r.Title && r.Title != "" {
		res.Extension = append(res.Extension, outExtension{URL: extRecordTitle, ValueString: r.Title})
	}
	subject := &outReference{Reference: b.patient}
	concept := &outConcept{Text: title}
	switch r.Kind {
	case phr.KindCondition:
		res.Code, res.Subject, res.RecordedDate = concept, subject, at
	case phr.KindMedication:
		// What a person lists as their medication: reported by them, status not known.
		res.Status, res.Intent, res.ReportedBoolean = "unknown", "order", true
		res.Medication, res.Subject, res.AuthoredOn = concept, subject, at
	case phr.KindImmunization:
		res.Status, res.VaccineCode, res.Patient, res.OccurrenceDateTime = "completed", concept, subject, at
		if at == "" {
			res.OccurrenceString = "unknown" // occurrence[x] is required
		}
	case phr.KindProcedure:
		res.Status, res.Code, res.Subject, res.PerformedDateTime = "unknown", concept, subject, at
	case phr.KindAllergy:
		res.Code, res.Patient, res.RecordedDate = concept, subject, at
	case phr.KindCarePlan:
		res.Status, res.Intent, res.Title, res.Subject, res.Created = "unknown", "plan", title, subject, at
	case phr.KindDiagnosticReport:
		res.Status, res.Code, res.Subject, res.EffectiveDateTime = "unknown", concept, subject, at
	case phr.KindNote:
		// The Content also goes in as the document, for programs that do not know our
		// extension.
		res.Status = "current"
		res.Type = &outConcept{Coding: []outCoding{{System: systemRecordKind, Code: phr.KindNote, Display: "Note"}}}
		res.Subject, res.Date, res.Description = subject, at, title
		res.Content = []outDocumentPart{{Attachment: outAttachment{ContentType: "application/json",
			Data: base64.StdEncoding.EncodeToString(r.Content)}}}
	}
	return res, fullURL, nil
}

// kindTypes is the resource type the writer makes for each kind of record; recordSpecs
// reads each back as that kind.
var kindTypes = map[string]string{
	phr.KindCondition: "Condition", phr.KindMedication: "MedicationRequest", phr.KindImmunization: "Immunization",
	phr.KindProcedure: "Procedure", phr.KindAllergy: "AllergyIntolerance", phr.KindCarePlan: "CarePlan",
	phr.KindDiagnosticReport: "DiagnosticReport", phr.KindNote: "DocumentReference",
}

// The import side of the extensions above: ParseBundle puts back what the writer set aside.

// extensionString returns the valueString of o's first extension with url, and where it
// is; ok is false when o has none.
func extensionString(o object, url string) (s, at string, ok bool, err error) {
	exts, err := o.objs("extension")
	if err != nil {
		return "", "", false, err
	}
	for _, x := range exts {
		u, err := x.str("url")
		if err != nil {
			return "", "", false, err
		}
		if u != url {
			continue
		}
		if _, isString := x.m["valueString"].(string); !isString {
			return "", "", false, invalid(x.path("valueString"), "is required and must be a string")
		}
		s, _ := x.str("valueString")
		return s, x.path("valueString"), true, nil
	}
	return "", "", false, nil
}

// jsonText checks that s, taken from at, is JSON the store can keep, as ParseBundle checks
// a whole bundle; object requires a JSON object.
func jsonText(s, at string, object bool) ([]byte, error) {
	b := []byte(s)
	if checkRaw(b) != nil || !json.Valid(b) {
		return nil, invalid(at, "must hold one JSON value, without NUL or unpaired surrogate escapes, nested at most %d levels", maxDepth)
	}
	if object {
		if _, ok := splitObject(b); !ok {
			return nil, invalid(at, "must hold a JSON object")
		}
	}
	return b, nil
}

// recordContent is the Content of the record read from e: what extRecordContent holds,
// when present, else the resource, compacted, with the references the writer rewrote put
// back.
func recordContent(e *entry, r object, spec recordSpec) (json.RawMessage, error) {
	s, at, ok, err := extensionString(r, extRecordContent)
	if err != nil {
		return nil, err
	}
	if ok {
		return jsonText(s, at, false)
	}
	raw, err := restoreReferences(e.raw, r, spec.subject)
	if err != nil {
		return nil, err
	}
	var content bytes.Buffer
	if err := json.Compact(&content, raw); err != nil {
		return nil, invalid(e.at+"/resource", "is not valid JSON")
	}
	return content.Bytes(), nil
}

// recordTitle is the Title extRecordTitle holds, when r has it, else title.
func recordTitle(r object, title string) (string, error) {
	s, at, ok, err := extensionString(r, extRecordTitle)
	if !ok || err != nil {
		return title, err
	}
	if s == "" || phr.CheckText("title", s, maxTitleRunes, false) != nil {
		return "", invalid(at, "must be a title of 1 to %d characters without control characters", maxTitleRunes)
	}
	return s, nil
}

// restoreReferences returns raw, a resource, with each member key that holds a reference
// with extOriginalReference replaced by the original it holds.
func restoreReferences(raw []byte, r object, key string) ([]byte, error) {
	sub, ok, err := r.obj(key)
	if !ok || err != nil {
		return raw, err
	}
	if has, err := hasExtension(sub, extOriginalReference); err != nil || !has {
		return raw, err
	}
	var out bytes.Buffer
	out.WriteByte('{')
	eachMember(raw, func(rawKey []byte, k string, value json.RawMessage) bool {
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		out.Write(rawKey)
		out.WriteByte(':')
		if k == key {
			if value, err = originalReference(value, r.path(key)); err != nil {
				return false
			}
		}
		out.Write(value)
		return true
	})
	if err != nil {
		return nil, err
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// originalReference returns what value, a member that holds a Reference, held before the
// export pointed it at its Patient: value itself when it carries no extOriginalReference
// (or, of a repeated name, is not the object the import reads).
func originalReference(value json.RawMessage, at string) (json.RawMessage, error) {
	v, err := decodeAny(value, at)
	if err != nil {
		return value, nil
	}
	o, err := asObject(v, at)
	if err != nil {
		return value, nil
	}
	s, sAt, ok, err := extensionString(o, extOriginalReference)
	if !ok || err != nil {
		return value, err
	}
	return jsonText(s, sAt, true)
}

// restoreTestResult replaces tr's fields with those extTestResult holds, when r has it.
func restoreTestResult(r object, tr *phr.TestResult) error {
	s, at, ok, err := extensionString(r, extTestResult)
	if !ok || err != nil {
		return err
	}
	raw, err := jsonText(s, at, true)
	if err != nil {
		return err
	}
	m, _ := splitObject(raw)
	// No control characters but tab, newline and carriage return, which nothing the store
	// holds has (the code system excepted, which the import takes as a lab sends it).
	fields := []struct {
		key   string
		value *string
		any   bool // any control character allowed (NUL excepted: jsonText refuses it)
	}{
		{"code_system", &tr.CodeSystem, true}, {"code", &tr.Code, false}, {"name", &tr.Name, false},
		{"value", &tr.Value, false}, {"value_type", &tr.ValueType, false}, {"unit", &tr.Unit, false},
		{"reference_range", &tr.ReferenceRange, false}, {"notes", &tr.Notes, false},
	}
	if len(m) != len(fields) {
		return invalid(at, "must hold exactly the members code_system, code, name, value, value_type, unit, reference_range and notes")
	}
	for _, f := range fields {
		raw, ok := m[f.key]
		v, isString := unquote(raw)
		if !ok || !isString {
			return invalid(at, "must hold the member %s, a string", f.key)
		}
		if !f.any && phr.CheckText(f.key, v, maxRestoredText, true) != nil {
			return invalid(at, "member %s must be text of at most %d characters without control characters but tab, newline and carriage return",
				f.key, maxRestoredText)
		}
		if f.any && len(v) > 4*maxRestoredText {
			return invalid(at, "member %s must be at most %d bytes", f.key, 4*maxRestoredText)
		}
		*f.value = v
	}
	if !valueTypes[tr.ValueType] {
		return invalid(at, "member value_type must be quantity, coded or string")
	}
	return nil
}

// maxRestoredText bounds each field extTestResult restores.
const maxRestoredText = 100000

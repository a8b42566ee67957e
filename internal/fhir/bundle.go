// Package fhir maps FHIR R4 JSON, as Synthea and patient portals export it, to and from
// VitalNexa's domain types.
package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Source is the phr Source of everything a bundle yields.
const Source = "fhir"

// DefaultMaxEntries is the entry limit when Options.MaxEntries is 0. Synthea's lifetime
// bundles hold a few thousand entries.
const DefaultMaxEntries = 20000

// Options tunes ParseBundle.
type Options struct {
	// MaxEntries bounds Bundle.entry; 0 (or less) means DefaultMaxEntries. The caller still
	// bounds the byte size of data.
	MaxEntries int
}

// Reasons an ImportSkip gives. Each names a rule, never a resource's content.
const (
	ReasonPatient       = "patient demographics come from the account, not the import"
	ReasonNotImported   = "resource type is not imported"
	ReasonUnknownType   = "resource type is not a FHIR R4 type"
	ReasonNotLab        = "observation is not a laboratory result"
	ReasonNoValue       = "laboratory observation has no value"
	ReasonValueType     = "laboratory observation value type is not supported"
	ReasonNoCode        = "laboratory observation has no test code"
	ReasonDuplicate     = "duplicate resource id in bundle"
	ReasonNoID          = "resource has neither an id nor a fullUrl"
	ReasonEnteredInErr  = "resource was entered in error"
	ReasonOtherPatient  = "resource is about a different patient"
	unknownResourceType = "unknown"
)

// bundleTypes are the Bundle.type values that carry resources to import; history bundles and
// transaction/batch responses describe a server's actions, not a patient's record.
var bundleTypes = map[string]bool{
	"transaction": true, "batch": true, "collection": true,
	"searchset": true, "document": true, "message": true,
}

// ParseBundle maps a FHIR R4 Bundle to an import batch for one user: laboratory
// Observations become TestResults, clinical resources become HealthRecords, and everything
// else is counted in Skipped by type and reason (sorted by type, then reason). Items keep the
// bundle's order; each has Source "fhir" and a SourceID (the resource id, else the entry's
// fullUrl), unique per kind of item.
//
// A bundle that BundleWriter wrote reads back to the items it was given: what the writer
// set aside in VitalNexa's own extensions (see export.go) is put back.
//
// The whole bundle is validated before anything is returned: any error is a *phr.Error with
// code phr.EINVALID whose Field is the JSON pointer of the offending element, and no batch
// comes back, so a bundle is imported whole or not at all. Error messages and skip reasons
// name rules and locations only, never values, which are PHI.
func ParseBundle(data []byte, opts Options) (*phr.ImportBatch, error) {
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD in what we read while the
	// stored Content kept the raw bytes; refuse instead of storing two versions of a text.
	if !utf8.Valid(data) {
		return nil, invalid("", "is not valid UTF-8")
	}
	if err := checkRaw(data); err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		return nil, syntaxError(data)
	}
	top, err := rawObject(data, "")
	if err != nil {
		return nil, err
	}
	if rt, err := rawString(top, "resourceType", ""); err != nil {
		return nil, err
	} else if rt != "Bundle" {
		return nil, invalid("/resourceType", "must be Bundle")
	}
	bt, err := rawString(top, "type", "")
	if err != nil {
		return nil, err
	}
	if !bundleTypes[bt] {
		return nil, invalid("/type", "must be one of transaction, batch, collection, searchset, document, message")
	}
	entries, err := readEntries(top, maxEntries)
	if err != nil {
		return nil, err
	}

	b := &builder{
		batch: &phr.ImportBatch{Source: Source, TestResults: []*phr.TestResult{}, HealthRecords: []*phr.HealthRecord{}},
		skips: map[phr.ImportSkip]int{},
		seen:  map[string]map[string]bool{},
		types: map[string]string{},
	}
	for i := range entries {
		e := &entries[i]
		if e.fullURL != "" {
			if _, dup := b.types[e.fullURL]; !dup {
				b.types[e.fullURL] = e.typ
			}
		}
		if e.typ != "Patient" {
			continue
		}
		if b.patient != nil {
			return nil, invalid(e.at+"/resource", "is a second Patient: bundle holds more than one patient")
		}
		r, err := e.decode()
		if err != nil {
			return nil, err
		}
		id, err := r.str("id")
		if err != nil {
			return nil, err
		}
		b.patient = &patientIdentity{fullURL: e.fullURL, id: id}
	}
	for i := range entries {
		if err := b.add(&entries[i]); err != nil {
			return nil, err
		}
	}
	b.batch.Skipped = b.skipped()
	return b.batch, nil
}

// entry is one Bundle.entry: where it is, its fullUrl and its resource, still raw.
type entry struct {
	at      string // "/entry/<i>"
	fullURL string
	typ     string
	raw     json.RawMessage
}

// decode decodes the entry's resource for reading.
func (e *entry) decode() (object, error) {
	at := e.at + "/resource"
	v, err := decodeAny(e.raw, at)
	if err != nil {
		return object{}, err
	}
	return asObject(v, at)
}

func readEntries(top map[string]json.RawMessage, maxEntries int) ([]entry, error) {
	rawEntries, ok := top["entry"]
	if !ok {
		return nil, nil
	}
	list, ok := splitArray(rawEntries)
	if !ok {
		return nil, invalid("/entry", "must be an array")
	}
	if len(list) > maxEntries {
		return nil, invalid("/entry", "holds more than %d entries", maxEntries)
	}
	entries := make([]entry, len(list))
	for i, raw := range list {
		at := "/entry/" + strconv.Itoa(i)
		fields, err := rawObject(raw, at)
		if err != nil {
			return nil, err
		}
		fullURL, err := rawString(fields, "fullUrl", at)
		if err != nil {
			return nil, err
		}
		if _, ok := fields["fullUrl"]; ok && !validURI(fullURL) {
			return nil, invalid(at+"/fullUrl", "must be a URI of at most %d printable ASCII characters", maxURLLen)
		}
		res, ok := fields["resource"]
		if !ok {
			return nil, invalid(at+"/resource", "is required")
		}
		resFields, err := rawObject(res, at+"/resource")
		if err != nil {
			return nil, err
		}
		typ, err := rawString(resFields, "resourceType", at+"/resource")
		if err != nil {
			return nil, err
		}
		if typ == "" {
			return nil, invalid(at+"/resource/resourceType", "is required")
		}
		entries[i] = entry{at: at, fullURL: fullURL, typ: typ, raw: res}
	}
	return entries, nil
}

// syntaxError explains why data, which json.Valid refused, is not one JSON value. Only the
// byte offset is reported: the decoder's own message quotes the offending character.
func syntaxError(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return invalid("", "is not valid JSON (byte %d)", syn.Offset)
		}
		return invalid("", "is not valid JSON")
	}
	return invalid("", "has data after the JSON value (byte %d)", dec.InputOffset())
}

// rawObject splits a JSON object into its members, still raw. Member names match exactly,
// unlike struct decoding, which would also take "ResourceType" for "resourceType".
func rawObject(raw json.RawMessage, at string) (map[string]json.RawMessage, error) {
	m, ok := splitObject(raw)
	if !ok {
		return nil, invalid(at, "must be a JSON object")
	}
	return m, nil
}

// rawString reads the string member key of a raw object, "" when absent.
func rawString(m map[string]json.RawMessage, key, at string) (string, error) {
	raw, ok := m[key]
	if !ok {
		return "", nil
	}
	s, ok := unquote(raw)
	if !ok {
		return "", invalid(at+"/"+key, "must be a string")
	}
	return s, nil
}

// patientIdentity is how resources in the bundle may refer to its one Patient.
type patientIdentity struct {
	fullURL, id string
}

// builder accumulates the batch while the entries are mapped.
type builder struct {
	batch   *phr.ImportBatch
	skips   map[phr.ImportSkip]int // keyed with Count 0
	seen    map[string]map[string]bool
	patient *patientIdentity
	types   map[string]string // fullUrl → resourceType
}

func (b *builder) skip(typ, reason string) {
	b.skips[phr.ImportSkip{ResourceType: typ, Reason: reason}]++
}

func (b *builder) skipped() []phr.ImportSkip {
	out := make([]phr.ImportSkip, 0, len(b.skips))
	for k, n := range b.skips {
		k.Count = n
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ResourceType != out[j].ResourceType {
			return out[i].ResourceType < out[j].ResourceType
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}

// claim reports whether sourceID is new for kind, and records it.
func (b *builder) claim(kind, sourceID string) bool {
	ids := b.seen[kind]
	if ids == nil {
		ids = map[string]bool{}
		b.seen[kind] = ids
	}
	if ids[sourceID] {
		return false
	}
	ids[sourceID] = true
	return true
}

func (b *builder) add(e *entry) error {
	switch spec, isRecord := recordSpecs[e.typ]; {
	case e.typ == "Patient":
		b.skip(e.typ, ReasonPatient)
	case e.typ == "Observation":
		r, err := e.decode()
		if err != nil {
			return err
		}
		return b.addObservation(e, r)
	case isRecord:
		r, err := e.decode()
		if err != nil {
			return err
		}
		if spec.accepts != nil && !spec.accepts(r) {
			b.skip(e.typ, ReasonNotImported)
			return nil
		}
		return b.addRecord(e, r, spec)
	case r4ResourceTypes[e.typ]:
		b.skip(e.typ, ReasonNotImported)
	default:
		// The name is the sender's text, not a FHIR type: it must not reach the report.
		b.skip(unknownResourceType, ReasonUnknownType)
	}
	return nil
}

// sourceID is the resource id, else the entry's fullUrl; "" when there is neither.
func sourceID(e *entry, r object) (string, error) {
	if !r.has("id") {
		return e.fullURL, nil
	}
	id, err := r.str("id")
	if err != nil {
		return "", err
	}
	if !fhirID.MatchString(id) {
		return "", invalid(r.path("id"), "must be a FHIR id (1 to 64 letters, digits, '-' or '.')")
	}
	return id, nil
}

// aboutOtherPatient reports whether the Reference member key of r points at a patient other
// than the bundle's: a portal bundle can carry a relative's records, which must not land in
// this user's record. Without a Patient in the bundle there is nothing to compare with.
func (b *builder) aboutOtherPatient(r object, key string) (bool, error) {
	ref, ok, err := r.obj(key)
	if !ok || err != nil {
		return false, err
	}
	s, err := ref.str("reference")
	if err != nil || s == "" || b.patient == nil || strings.HasPrefix(s, "#") {
		return false, err
	}
	if s == b.patient.fullURL {
		return false, nil
	}
	if strings.HasPrefix(s, "urn:") {
		// In-bundle references must resolve; one that names another entry is about
		// that entry (a Group, a Device), one that names nothing is about someone absent.
		_, resolves := b.types[s]
		return !resolves, nil
	}
	if i := strings.Index(s, "/_history/"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, "/")
	if len(parts) >= 2 && parts[len(parts)-2] == "Patient" {
		return parts[len(parts)-1] != b.patient.id, nil
	}
	return false, nil
}

// R4ResourceTypes lists the resource types of FHIR R4 (4.0.1).
func R4ResourceTypes() []string { return slices.Sorted(maps.Keys(r4ResourceTypes)) }

// r4ResourceTypes are the resource types of FHIR R4 (4.0.1).
var r4ResourceTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range strings.Fields(`Account ActivityDefinition AdverseEvent AllergyIntolerance
	Appointment AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure
	Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim
	ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest
	CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage
	CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition
	DeviceMetric DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest
	DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest
	EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario
	ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse
	HealthcareService ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation
	ImplementationGuide InsurancePlan Invoice Library Linkage List Location Measure MeasureReport
	Media Medication MedicationAdministration MedicationDispense MedicationKnowledge
	MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization
	MedicinalProductContraindication MedicinalProductIndication MedicinalProductIngredient
	MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged
	MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition
	MessageHeader MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition
	OperationDefinition OperationOutcome Organization OrganizationAffiliation Parameters Patient
	PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole
	Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup
	ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
	RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
	StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer
	SubstanceProtein SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification
	SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet
	VerificationResult VisionPrescription`) {
		m[t] = true
	}
	return m
}()

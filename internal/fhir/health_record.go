package fhir

import (
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// maxTitleRunes caps a record's Title; the full resource stays in Content.
const maxTitleRunes = 500

// recordSpec says how one resource type becomes a health record.
type recordSpec struct {
	kind    string
	generic string // the Title when the resource names nothing
	title   func(r object) (string, error)
	when    func(r object) (time.Time, error)
	subject string // the member referring to the patient
	// inError reports whether the resource says it was entered in error.
	inError func(r object) (bool, error)
	// accepts, when set, picks the resources of the type that are records; the others are
	// skipped as not imported.
	accepts func(r object) bool
}

var recordSpecs = map[string]recordSpec{
	"Condition": {
		kind: phr.KindCondition, generic: "Condition", title: conceptTitle("code"), subject: "subject",
		when:    timeOf(dateTime("onsetDateTime"), dateTime("recordedDate"), periodStart("onsetPeriod")),
		inError: verificationInError,
	},
	"MedicationRequest": {
		kind: phr.KindMedication, generic: "Medication", title: medicationTitle, subject: "subject",
		when:    timeOf(dateTime("authoredOn")),
		inError: statusInError,
	},
	"Immunization": {
		kind: phr.KindImmunization, generic: "Immunization", title: conceptTitle("vaccineCode"), subject: "patient",
		when:    timeOf(dateTime("occurrenceDateTime")),
		inError: statusInError,
	},
	"Procedure": {
		kind: phr.KindProcedure, generic: "Procedure", title: conceptTitle("code"), subject: "subject",
		when:    timeOf(dateTime("performedDateTime"), periodStart("performedPeriod")),
		inError: statusInError,
	},
	"AllergyIntolerance": {
		kind: phr.KindAllergy, generic: "Allergy", title: conceptTitle("code"), subject: "patient",
		when:    timeOf(dateTime("recordedDate"), dateTime("onsetDateTime")),
		inError: verificationInError,
	},
	"CarePlan": {
		kind: phr.KindCarePlan, generic: "Care plan", title: carePlanTitle, subject: "subject",
		when:    timeOf(periodStart("period"), dateTime("created")),
		inError: statusInError,
	},
	"DiagnosticReport": {
		kind: phr.KindDiagnosticReport, generic: "Diagnostic report", title: conceptTitle("code"), subject: "subject",
		when:    timeOf(dateTime("effectiveDateTime"), periodStart("effectivePeriod"), dateTime("issued")),
		inError: statusInError,
	},
	// Notes are DocumentReferences coded as ours, as BundleWriter writes them; other
	// documents (a portal's scans and letters) are not imported.
	"DocumentReference": {
		kind: phr.KindNote, generic: "Note", title: descriptionTitle, subject: "subject",
		when:    timeOf(dateTime("date")),
		inError: statusInError,
		accepts: isOwnNote,
	},
}

func (b *builder) addRecord(e *entry, r object, spec recordSpec) error {
	inError, err := spec.inError(r)
	if err != nil {
		return err
	}
	other, err := b.aboutOtherPatient(r, spec.subject)
	if err != nil {
		return err
	}
	title, err := spec.title(r)
	if err != nil {
		return err
	}
	if title == "" {
		title = spec.generic
	}
	if title, err = recordTitle(r, title); err != nil {
		return err
	}
	at, err := spec.when(r)
	if err != nil {
		return err
	}
	id, err := sourceID(e, r)
	if err != nil {
		return err
	}
	content, err := recordContent(e, r, spec)
	if err != nil {
		return err
	}
	switch {
	case inError:
		b.skip(e.typ, ReasonEnteredInErr)
	case other:
		b.skip(e.typ, ReasonOtherPatient)
	case id == "":
		b.skip(e.typ, ReasonNoID)
	case !b.claim(spec.kind, id):
		b.skip(e.typ, ReasonDuplicate)
	default:
		b.batch.HealthRecords = append(b.batch.HealthRecords, &phr.HealthRecord{
			Kind:       spec.kind,
			Title:      truncate(title, maxTitleRunes),
			Content:    content,
			RecordedAt: at,
			Source:     Source,
			SourceID:   id,
		})
	}
	return nil
}

// timeOf reads a record's date from the first of elems present.
func timeOf(elems ...dateElem) func(r object) (time.Time, error) {
	return func(r object) (time.Time, error) { return firstDate(r, elems...) }
}

func conceptTitle(key string) func(r object) (string, error) {
	return func(r object) (string, error) {
		c, _, err := readConcept(r, key)
		return c.label(), err
	}
}

func medicationTitle(r object) (string, error) {
	c, _, err := readConcept(r, "medicationCodeableConcept")
	if err != nil {
		return "", err
	}
	ref, ok, err := r.obj("medicationReference")
	if err != nil || !ok || c.label() != "" {
		return c.label(), err
	}
	d, err := ref.str("display")
	return cleanLine(d), err
}

func carePlanTitle(r object) (string, error) {
	t, err := r.str("title")
	if err != nil {
		return "", err
	}
	categories, err := r.objs("category")
	if err != nil {
		return "", err
	}
	if t := cleanLine(t); t != "" {
		return t, nil
	}
	if len(categories) == 0 {
		return "Care plan", nil
	}
	c, err := conceptOf(categories[0])
	return c.label(), err
}

func descriptionTitle(r object) (string, error) {
	d, err := r.str("description")
	return cleanLine(d), err
}

// isOwnNote reports whether a DocumentReference is typed as our note. A type that is not a
// well-formed CodeableConcept is simply not ours: other documents are skipped unread.
func isOwnNote(r object) bool {
	c, _, err := readConcept(r, "type")
	return err == nil && c.has(systemRecordKind, phr.KindNote)
}

func statusInError(r object) (bool, error) {
	s, err := r.str("status")
	return s == "entered-in-error", err
}

// verificationInError reads verificationStatus, which is how Condition and
// AllergyIntolerance say they were entered in error.
func verificationInError(r object) (bool, error) {
	c, _, err := readConcept(r, "verificationStatus")
	for _, k := range c.codings {
		if k.code == "entered-in-error" {
			return true, err
		}
	}
	return false, err
}

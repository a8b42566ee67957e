package fhir

import (
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// coding is a FHIR Coding: one code from one code system.
type coding struct {
	system, code, display string
}

// concept is a FHIR CodeableConcept.
type concept struct {
	text    string
	codings []coding
}

// readConcept reads the CodeableConcept member key; ok is false when it is absent.
func readConcept(o object, key string) (concept, bool, error) {
	c, ok, err := o.obj(key)
	if !ok || err != nil {
		return concept{}, false, err
	}
	cc, err := conceptOf(c)
	return cc, true, err
}

func conceptOf(c object) (concept, error) {
	var cc concept
	var err error
	if cc.text, err = c.str("text"); err != nil {
		return concept{}, err
	}
	codings, err := c.objs("coding")
	if err != nil {
		return concept{}, err
	}
	for _, co := range codings {
		var k coding
		if k.system, err = co.str("system"); err != nil {
			return concept{}, err
		}
		if k.code, err = co.str("code"); err != nil {
			return concept{}, err
		}
		if k.display, err = co.str("display"); err != nil {
			return concept{}, err
		}
		cc.codings = append(cc.codings, k)
	}
	return cc, nil
}

// label is what a person would call the concept: its text, else the first display.
func (c concept) label() string {
	if t := cleanLine(c.text); t != "" {
		return t
	}
	for _, k := range c.codings {
		if d := cleanLine(k.display); d != "" {
			return d
		}
	}
	return ""
}

// has reports whether any coding is code in system.
func (c concept) has(system, code string) bool {
	for _, k := range c.codings {
		if k.system == system && k.code == code {
			return true
		}
	}
	return false
}

// dateTimeForms are the FHIR dateTime forms without a time of day. A time of day must carry
// its zone (FHIR requires it), which is exactly RFC 3339.
var dateTimeForms = map[int]string{4: "2006", 7: "2006-01", 10: "2006-01-02"}

// parseDateTime parses a FHIR date, dateTime or instant; partial dates mean their first
// instant in UTC.
func parseDateTime(s string) (time.Time, bool) {
	layout, ok := dateTimeForms[len(s)]
	if !ok {
		layout = time.RFC3339
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// readDateTime reads the dateTime member key; ok is false when it is absent.
func readDateTime(o object, key string) (time.Time, bool, error) {
	if !o.has(key) {
		return time.Time{}, false, nil
	}
	s, err := o.str(key)
	if err != nil {
		return time.Time{}, false, err
	}
	t, ok := parseDateTime(s)
	if !ok {
		return time.Time{}, false, invalid(o.path(key), "must be a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD or RFC 3339 with a zone)")
	}
	return t, true, nil
}

// readPeriodStart reads the start of the Period member key; ok is false when there is none.
func readPeriodStart(o object, key string) (time.Time, bool, error) {
	p, ok, err := o.obj(key)
	if !ok || err != nil {
		return time.Time{}, false, err
	}
	return readDateTime(p, "start")
}

// dateElem names one element that may carry a resource's date: a dateTime (or instant),
// or the start of a Period.
type dateElem struct {
	key    string
	period bool
}

func dateTime(key string) dateElem    { return dateElem{key: key} }
func periodStart(key string) dateElem { return dateElem{key: key, period: true} }

// firstDate returns the time of the first of elems present in r, the zero time when none is.
// Every listed element is checked, even after one was found: the whole resource is validated.
func firstDate(r object, elems ...dateElem) (time.Time, error) {
	var found time.Time
	var have bool
	for _, e := range elems {
		read := readDateTime
		if e.period {
			read = readPeriodStart
		}
		t, ok, err := read(r, e.key)
		if err != nil {
			return time.Time{}, err
		}
		if ok && !have {
			found, have = t, true
		}
	}
	return found, nil
}

// fhirID is the FHIR id datatype. Holding ids to it keeps SourceIDs short and free of text
// that could carry clinical content.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// maxURLLen bounds a fullUrl used as a SourceID.
const maxURLLen = 2048

// validURI reports whether s may serve as an identity: printable ASCII without spaces.
func validURI(s string) bool {
	if s == "" || len(s) > maxURLLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// cleanLine makes s a single line: control characters (newlines included) become spaces and
// the ends are trimmed, so that labels pass the store's text checks.
func cleanLine(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
}

// cleanText is cleanLine for free text that may span lines: tab, newline and carriage
// return stay.
func cleanText(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return ' '
		}
		return r
	}, s))
}

// truncate cuts s to at most max runes, on a rune boundary.
func truncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i]
		}
		n++
	}
	return s
}

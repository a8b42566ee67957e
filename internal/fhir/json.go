package fhir

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// maxDepth bounds the nesting of arrays and objects. Real FHIR resources stay well under
// 30 levels; the bound keeps a hostile bundle from driving the decoder's recursion.
const maxDepth = 100

// invalid returns the EINVALID error for the element at the JSON pointer at. The message
// repeats the location so that it is useful on its own, and never quotes the element's
// value: values are clinical content.
func invalid(at, rule string, args ...any) error {
	subject := at
	if subject == "" {
		subject = "bundle"
	}
	return phr.FieldErrorf(phr.EINVALID, at, subject+" "+rule, args...)
}

// checkRaw rejects, before any decoding, what encoding/json would accept but the rest of the
// system could not hold: nesting deeper than maxDepth, the escape \u0000 and unpaired UTF-16
// surrogate escapes (PostgreSQL jsonb refuses both, which would turn a bad upload into an
// internal error at store time). Syntax errors are left to the decoder, which reports them.
func checkRaw(data []byte) error {
	depth := 0
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '"':
				inString = false
			case '\\':
				if i+1 >= len(data) {
					return nil
				}
				i++
				if data[i] != 'u' {
					continue
				}
				r, ok := hex4(data, i+1)
				if !ok {
					return nil
				}
				i += 4
				switch {
				case r == 0:
					return invalid("", "must not contain the NUL character escape (byte %d)", i-5)
				case r >= 0xDC00 && r <= 0xDFFF:
					return invalid("", "must not contain an unpaired surrogate escape (byte %d)", i-5)
				case r >= 0xD800 && r <= 0xDBFF:
					if i+2 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
						if lo, ok := hex4(data, i+3); ok && lo >= 0xDC00 && lo <= 0xDFFF {
							i += 6
							continue
						}
					}
					return invalid("", "must not contain an unpaired surrogate escape (byte %d)", i-5)
				}
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > maxDepth {
				return invalid("", "is nested more than %d levels deep (byte %d)", maxDepth, i)
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}

// hex4 decodes the four hex digits at data[i:i+4].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data[i:i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(n), true
}

// decodeAny decodes one JSON value that is already known to be well formed, keeping
// numbers as json.Number so that a lab's "5.30" stays "5.30".
func decodeAny(raw []byte, at string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, invalid(at, "is not valid JSON")
	}
	return v, nil
}

// object is a decoded JSON object together with where it was read, so that every type
// error names its exact location. Its accessors treat an absent member as empty and any
// other JSON type than the expected one, null included, as invalid: FHIR JSON never uses null
// for a property.
type object struct {
	at string
	m  map[string]any
}

func asObject(v any, at string) (object, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return object{}, invalid(at, "must be a JSON object")
	}
	return object{at: at, m: m}, nil
}

func (o object) path(key string) string { return o.at + "/" + key }

func (o object) has(key string) bool {
	_, ok := o.m[key]
	return ok
}

// str returns the string member key, "" when absent.
func (o object) str(key string) (string, error) {
	v, ok := o.m[key]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", invalid(o.path(key), "must be a string")
	}
	return s, nil
}

// obj returns the object member key; ok is false when it is absent.
func (o object) obj(key string) (object, bool, error) {
	v, ok := o.m[key]
	if !ok {
		return object{}, false, nil
	}
	sub, err := asObject(v, o.path(key))
	return sub, err == nil, err
}

// objs returns the array-of-objects member key, nil when absent.
func (o object) objs(key string) ([]object, error) {
	v, ok := o.m[key]
	if !ok {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, invalid(o.path(key), "must be an array")
	}
	out := make([]object, len(a))
	for i, e := range a {
		sub, err := asObject(e, o.path(key)+"/"+strconv.Itoa(i))
		if err != nil {
			return nil, err
		}
		out[i] = sub
	}
	return out, nil
}

// num returns the number member key as its literal text; ok is false when it is absent.
func (o object) num(key string) (json.Number, bool, error) {
	v, ok := o.m[key]
	if !ok {
		return "", false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return "", false, invalid(o.path(key), "must be a number")
	}
	// JSON allows 1e400; no measurement is that large, and a client that reads it back
	// gets Infinity, so it is refused rather than stored.
	if _, err := strconv.ParseFloat(string(n), 64); err != nil {
		return "", false, invalid(o.path(key), "must be a finite number")
	}
	return n, true, nil
}

// boolean returns the boolean member key; ok is false when it is absent.
func (o object) boolean(key string) (bool, bool, error) {
	v, ok := o.m[key]
	if !ok {
		return false, false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, false, invalid(o.path(key), "must be a boolean")
	}
	return b, true, nil
}

// The splitters below take apart JSON that has already been validated as a whole, one level
// at a time and without decoding: a bundle is split into entries and members several levels
// deep, and running encoding/json's validating scanner at every level made the import about
// ten times slower. They rely on the input being valid JSON and do not check it again.

// splitObject returns the members of raw, a valid JSON value; ok is false when it is not an
// object. Of repeated member names the last wins, as in encoding/json and PostgreSQL jsonb.
func splitObject(raw []byte) (m map[string]json.RawMessage, ok bool) {
	m = map[string]json.RawMessage{}
	ok = eachMember(raw, func(_ []byte, key string, value json.RawMessage) bool {
		m[key] = value
		return true
	})
	if !ok {
		return nil, false
	}
	return m, true
}

// eachMember calls f with each member of raw, a valid JSON value, in order and repeated
// names included: the member name as written (quotes and escapes kept), decoded, and the
// value. It stops when f returns false; ok is false when raw is not an object or a name
// does not decode.
func eachMember(raw []byte, f func(rawKey []byte, key string, value json.RawMessage) bool) (ok bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	i = skipSpace(raw, i+1)
	for i < len(raw) && raw[i] != '}' {
		end := skipString(raw, i)
		rawKey := raw[i:end]
		key, ok := unquote(rawKey)
		if !ok {
			return false
		}
		i = skipSpace(raw, end)
		i = skipSpace(raw, i+1) // ':'
		end = skipValue(raw, i)
		if !f(rawKey, key, raw[i:end]) {
			return true
		}
		i = skipSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return true
}

// splitArray returns the elements of raw, a valid JSON value; ok is false when it is not an
// array.
func splitArray(raw []byte) (elems []json.RawMessage, ok bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return nil, false
	}
	i = skipSpace(raw, i+1)
	for i < len(raw) && raw[i] != ']' {
		end := skipValue(raw, i)
		elems = append(elems, raw[i:end])
		i = skipSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return elems, true
}

func unquote(s []byte) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	// encoding/json turns invalid UTF-8 into U+FFFD; the fast path must not differ.
	if bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return string(s[1 : len(s)-1]), true
	}
	var out string
	if err := json.Unmarshal(s, &out); err != nil {
		return "", false
	}
	return out, true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at data[i].
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// skipValue returns the index just past the value that starts at data[i].
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(data)
	default: // number, true, false, null
		for i < len(data) {
			switch data[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

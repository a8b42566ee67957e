package web

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vitalnexa/vitalnexa/api"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Values a client sends that must never come back in an error: a password, PHI.
const (
	testOpenAPIPassword = "Tr0ub4dor&3-not-for-logs"
	testOpenAPIEmail    = "jane.patient@example.org"
	testOpenAPIName     = "Jane Q Patient"
	testOpenAPIID       = "0b7e2c4e-9c1f-4a52-8d0e-3f6a1b2c3d4e"
)

var testOpenAPISecrets = []string{testOpenAPIPassword, testOpenAPIEmail, testOpenAPIName}

var (
	testOpenAPIOnce      sync.Once
	testOpenAPIShared    *requestValidator
	testOpenAPISharedErr error
)

// mustOpenAPIValidator returns one validator for the whole test binary: it is built once
// in production too, and sharing it lets parallel subtests exercise concurrent use.
func mustOpenAPIValidator(tb testing.TB) *requestValidator {
	tb.Helper()
	testOpenAPIOnce.Do(func() { testOpenAPIShared, testOpenAPISharedErr = newRequestValidator(api.Spec) })
	if testOpenAPISharedErr != nil {
		tb.Fatalf("newRequestValidator: %v", testOpenAPISharedErr)
	}
	return testOpenAPIShared
}

// testOpenAPIRequest builds a request as the server sees it, with the body both in
// r.Body and in the bytes handed to validate.
func testOpenAPIRequest(method, target, contentType, body string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

// testOpenAPIRegister returns a register body with the given members replaced (or, with
// a nil value, removed); values are raw JSON.
func testOpenAPIRegister(replace map[string]*string) string {
	members := []struct{ name, value string }{
		{"email", `"` + testOpenAPIEmail + `"`},
		{"password", `"` + testOpenAPIPassword + `"`},
		{"full_name", `"` + testOpenAPIName + `"`},
		{"date_of_birth", `"1984-03-09"`},
	}
	var parts []string
	seen := map[string]bool{}
	for _, m := range members {
		seen[m.name] = true
		v, ok := replace[m.name]
		if ok && v == nil {
			continue
		}
		if ok {
			m.value = *v
		}
		parts = append(parts, `"`+m.name+`":`+m.value)
	}
	for name, v := range replace {
		if !seen[name] && v != nil {
			parts = append(parts, `"`+name+`":`+*v)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func testOpenAPIRaw(s string) *string { return &s }

func TestOpenAPIValidate(t *testing.T) {
	v := mustOpenAPIValidator(t)
	const jsonCT = "application/json"
	long := func(n int) string { return strings.Repeat("x", n) }
	quoted := func(s string) string { return `"` + s + `"` }
	record := `{"kind":"note","title":"` + testOpenAPIName + `","content":{"text":"` + testOpenAPIName + `"}}`
	hr := "/api/health-records/" + testOpenAPIID

	tests := []struct {
		name                string
		method, target, ct  string
		body                string
		wantCode, wantField string
		wantMessage         string // checked when set
	}{
		// Requests the contract accepts.
		{name: "healthz", method: "GET", target: "/healthz"},
		{name: "healthz HEAD", method: "HEAD", target: "/healthz"},
		{name: "readyz", method: "GET", target: "/readyz"},
		{name: "register", method: "POST", target: "/api/auth/register", ct: jsonCT, body: testOpenAPIRegister(nil)},
		{name: "register with charset", method: "POST", target: "/api/auth/register", ct: "application/json; charset=UTF-8", body: testOpenAPIRegister(nil)},
		{name: "register password at limit", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body: testOpenAPIRegister(map[string]*string{"password": testOpenAPIRaw(quoted(strings.Repeat("é", 256)))})},
		{name: "verify email", method: "POST", target: "/api/auth/verify-email", ct: jsonCT, body: `{"token":"abc"}`},
		{name: "token", method: "POST", target: "/api/auth/token", ct: jsonCT,
			body: `{"email":"` + testOpenAPIEmail + `","password":"` + testOpenAPIPassword + `"}`},
		{name: "refresh", method: "POST", target: "/api/auth/refresh", ct: jsonCT, body: `{"refresh_token":"r1"}`},
		{name: "login", method: "POST", target: "/api/auth/login", ct: jsonCT,
			body: ` {"email":"` + testOpenAPIEmail + `","password":"` + testOpenAPIPassword + `"} ` + "\n"},
		{name: "logout", method: "POST", target: "/api/auth/logout"},
		{name: "me", method: "GET", target: "/api/me"},
		{name: "import fhir+json", method: "POST", target: "/api/imports/fhir", ct: "application/fhir+json",
			body: `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","name":[{"text":"` + testOpenAPIName + `"}]}}]}`},
		{name: "import json", method: "POST", target: "/api/imports/fhir", ct: jsonCT, body: `{"resourceType":"Observation"}`},
		{name: "test results", method: "GET", target: "/api/test-results"},
		{name: "test results all params", method: "GET", target: "/api/test-results?limit=1&cursor=abc&code=2345-7"},
		{name: "test results limit 100", method: "GET", target: "/api/test-results?limit=100"},
		{name: "test result", method: "GET", target: "/api/test-results/" + testOpenAPIID},
		{name: "test result upper-case id", method: "GET", target: "/api/test-results/" + strings.ToUpper(testOpenAPIID)},
		{name: "health records by kind", method: "GET", target: "/api/health-records?kind=care_plan&limit=50"},
		{name: "create record", method: "POST", target: "/api/health-records", ct: jsonCT, body: record},
		{name: "create record string content", method: "POST", target: "/api/health-records", ct: jsonCT,
			body: `{"kind":"allergy","title":"t","content":"peanuts","recorded_at":"2024-05-01T10:00:00Z"}`},
		{name: "create record array content", method: "POST", target: "/api/health-records", ct: jsonCT,
			body: `{"kind":"medication","title":"t","content":[1,{"a":[true]}]}`},
		{name: "create record title at limit", method: "POST", target: "/api/health-records", ct: jsonCT,
			body: `{"kind":"note","title":"` + long(500) + `","content":0}`},
		{name: "get record", method: "GET", target: hr},
		{name: "patch record", method: "PATCH", target: hr, ct: jsonCT, body: `{"title":"new"}`},
		{name: "patch record content", method: "PATCH", target: hr, ct: jsonCT, body: `{"content":{"a":1}}`},
		{name: "delete record", method: "DELETE", target: hr},
		{name: "record history", method: "GET", target: hr + "/history?limit=10"},
		{name: "patch me", method: "PATCH", target: "/api/me", ct: jsonCT,
			body: `{"full_name":"` + testOpenAPIName + `","date_of_birth":"1984-03-09"}`},
		{name: "patch me email", method: "PATCH", target: "/api/me", ct: jsonCT,
			body: `{"email":"` + testOpenAPIEmail + `","current_password":"` + testOpenAPIPassword + `"}`},
		{name: "my history", method: "GET", target: "/api/me/history?entity=test_result&limit=5&cursor=abc"},
		{name: "patch test result", method: "PATCH", target: "/api/test-results/" + testOpenAPIID, ct: jsonCT,
			body: `{"value":"5.5","unit":"mmol/L","notes":"a\nb","effective_at":"2024-05-01T10:00:00Z"}`},
		{name: "delete test result", method: "DELETE", target: "/api/test-results/" + testOpenAPIID},
		{name: "test result history", method: "GET", target: "/api/test-results/" + testOpenAPIID + "/history"},

		// Routes that are not in the contract.
		{name: "unknown route", method: "GET", target: "/api/nope", wantCode: phr.ENOTFOUND},
		{name: "method not in contract", method: "PUT", target: hr, ct: jsonCT, body: record, wantCode: phr.ENOTFOUND},
		{name: "trailing slash", method: "GET", target: "/api/me/", wantCode: phr.ENOTFOUND},
		{name: "trailing slash after id", method: "GET", target: hr + "/", wantCode: phr.ENOTFOUND},
		{name: "doubled slash", method: "GET", target: "/api//me", wantCode: phr.ENOTFOUND},
		{name: "path case", method: "GET", target: "/API/me", wantCode: phr.ENOTFOUND},
		{name: "enum value of wrong type", method: "GET", target: "/api/health-records?kind=7",
			wantCode: phr.EINVALID, wantField: "kind"},
		// Attack: path traversal out of the id segment.
		{name: "id with slash", method: "GET", target: "/api/health-records/" + testOpenAPIID + "/../../me", wantCode: phr.ENOTFOUND},

		// Bodies that break the schema.
		// Attack: mass assignment, a client makes itself admin by adding a field.
		{name: "unknown property", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"role": testOpenAPIRaw(`"admin"`)}),
			wantCode: phr.EINVALID, wantField: "/role", wantMessage: "is not allowed"},
		// Attack: PHI put in a property name comes back in Field and lands in logs.
		{name: "unknown property with free-text name", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{testOpenAPIName + " has asthma": testOpenAPIRaw(`1`)}),
			wantCode: phr.EINVALID, wantField: "", wantMessage: "is not allowed"},
		// Attack: reassigning a record to another user through PATCH.
		{name: "patch user_id", method: "PATCH", target: hr, ct: jsonCT, body: `{"title":"x","user_id":"` + testOpenAPIID + `"}`,
			wantCode: phr.EINVALID, wantField: "/user_id", wantMessage: "is not allowed"},
		// Attack: a manual record passed off as imported by setting its source.
		{name: "create with source", method: "POST", target: "/api/health-records", ct: jsonCT,
			body:     `{"kind":"note","title":"t","content":1,"source":"fhir"}`,
			wantCode: phr.EINVALID, wantField: "/source", wantMessage: "is not allowed"},
		{name: "email wrong type", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"email": testOpenAPIRaw(`["` + testOpenAPIEmail + `"]`)}),
			wantCode: phr.EINVALID, wantField: "/email", wantMessage: "must be a string"},
		// Attack: type confusion, a password sent as an object to reach odd code paths.
		{name: "password wrong type", method: "POST", target: "/api/auth/token", ct: jsonCT,
			body:     `{"email":"` + testOpenAPIEmail + `","password":{"$ne":"` + testOpenAPIPassword + `"}}`,
			wantCode: phr.EINVALID, wantField: "/password", wantMessage: "must be a string"},
		{name: "missing password", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"password": nil}),
			wantCode: phr.EINVALID, wantField: "/password", wantMessage: "is required"},
		{name: "missing date of birth", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"date_of_birth": nil}),
			wantCode: phr.EINVALID, wantField: "/date_of_birth", wantMessage: "is required"},
		// Attack: an oversize password to tie up bcrypt workers.
		{name: "password too long", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"password": testOpenAPIRaw(quoted(testOpenAPIPassword + long(257)))}),
			wantCode: phr.EINVALID, wantField: "/password", wantMessage: "must be at most 256 characters"},
		{name: "full name too long", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"full_name": testOpenAPIRaw(quoted(testOpenAPIName + long(200)))}),
			wantCode: phr.EINVALID, wantField: "/full_name", wantMessage: "must be at most 200 characters"},
		{name: "full name empty", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"full_name": testOpenAPIRaw(`""`)}),
			wantCode: phr.EINVALID, wantField: "/full_name", wantMessage: "must not be empty"},
		{name: "email too long", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"email": testOpenAPIRaw(quoted(long(250) + "@example.org"))}),
			wantCode: phr.EINVALID, wantField: "/email", wantMessage: "must be at most 254 characters"},
		{name: "email not an address", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"email": testOpenAPIRaw(`"jane.patient"`)}),
			wantCode: phr.EINVALID, wantField: "/email", wantMessage: "must be an email address"},
		// Attack: header injection through a display-name address in outgoing mail.
		{name: "email with display name", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"email": testOpenAPIRaw(`"Jane <` + testOpenAPIEmail + `>"`)}),
			wantCode: phr.EINVALID, wantField: "/email", wantMessage: "must be an email address"},
		{name: "date of birth not a day", method: "POST", target: "/api/auth/register", ct: jsonCT,
			body:     testOpenAPIRegister(map[string]*string{"date_of_birth": testOpenAPIRaw(`"1984-02-30"`)}),
			wantCode: phr.EINVALID, wantField: "/date_of_birth", wantMessage: "must be a date (YYYY-MM-DD)"},
		{name: "verify token too long", method: "POST", target: "/api/auth/verify-email", ct: jsonCT,
			body:     `{"token":"` + long(201) + `"}`,
			wantCode: phr.EINVALID, wantField: "/token", wantMessage: "must be at most 200 characters"},
		{name: "bad kind", method: "POST", target: "/api/health-records", ct: jsonCT,
			body:     `{"kind":"diary","title":"t","content":1}`,
			wantCode: phr.EINVALID, wantField: "/kind",
			wantMessage: "must be one of: condition, medication, immunization, procedure, allergy, care_plan, diagnostic_report, note"},
		{name: "missing content", method: "POST", target: "/api/health-records", ct: jsonCT,
			body:     `{"kind":"note","title":"t"}`,
			wantCode: phr.EINVALID, wantField: "/content", wantMessage: "is required"},
		{name: "null content", method: "POST", target: "/api/health-records", ct: jsonCT,
			body:     `{"kind":"note","title":"t","content":null}`,
			wantCode: phr.EINVALID, wantField: "/content", wantMessage: "must not be null"},
		{name: "title too long", method: "POST", target: "/api/health-records", ct: jsonCT,
			body:     `{"kind":"note","title":"` + long(501) + `","content":1}`,
			wantCode: phr.EINVALID, wantField: "/title", wantMessage: "must be at most 500 characters"},
		{name: "recorded_at not a time", method: "POST", target: "/api/health-records", ct: jsonCT,
			body:     `{"kind":"note","title":"t","content":1,"recorded_at":"last tuesday"}`,
			wantCode: phr.EINVALID, wantField: "/recorded_at", wantMessage: "must be a date-time (RFC 3339)"},
		{name: "empty patch", method: "PATCH", target: hr, ct: jsonCT, body: `{}`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "must have at least 1 property"},
		{name: "patch kind wrong type", method: "PATCH", target: hr, ct: jsonCT, body: `{"kind":7}`,
			wantCode: phr.EINVALID, wantField: "/kind", wantMessage: "must be a string"},
		// Attack: mass assignment through the profile correction, to become an admin.
		{name: "patch me role", method: "PATCH", target: "/api/me", ct: jsonCT, body: `{"full_name":"x","role":"admin"}`,
			wantCode: phr.EINVALID, wantField: "/role", wantMessage: "is not allowed"},
		{name: "patch me empty", method: "PATCH", target: "/api/me", ct: jsonCT, body: `{}`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "must have at least 1 property"},
		{name: "patch me date of birth not a day", method: "PATCH", target: "/api/me", ct: jsonCT, body: `{"date_of_birth":"1984-02-30"}`,
			wantCode: phr.EINVALID, wantField: "/date_of_birth", wantMessage: "must be a date (YYYY-MM-DD)"},
		// Attack: a corrected result passed off as another test by changing its code.
		{name: "patch test result code", method: "PATCH", target: "/api/test-results/" + testOpenAPIID, ct: jsonCT,
			body: `{"value":"1","code":"718-7"}`, wantCode: phr.EINVALID, wantField: "/code", wantMessage: "is not allowed"},
		{name: "patch test result notes too long", method: "PATCH", target: "/api/test-results/" + testOpenAPIID, ct: jsonCT,
			body: `{"notes":"` + long(10001) + `"}`, wantCode: phr.EINVALID, wantField: "/notes", wantMessage: "must be at most 10000 characters"},
		{name: "history of an unknown entity", method: "GET", target: "/api/me/history?entity=files",
			wantCode: phr.EINVALID, wantField: "entity"},
		{name: "body is an array", method: "POST", target: "/api/auth/register", ct: jsonCT, body: `[]`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "must be an object"},
		{name: "body is null", method: "POST", target: "/api/auth/refresh", ct: jsonCT, body: `null`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "must not be null"},
		{name: "missing body", method: "POST", target: "/api/auth/register", ct: jsonCT,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "request body is required"},
		{name: "malformed JSON", method: "POST", target: "/api/auth/token", ct: jsonCT,
			body:     `{"email":"` + testOpenAPIEmail + `","password":"` + testOpenAPIPassword + `"`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "request body must be valid JSON"},
		// Attack: a second JSON value after the first, read by one parser and not another.
		{name: "trailing JSON value", method: "POST", target: "/api/auth/refresh", ct: jsonCT,
			body:     `{"refresh_token":"a"}{"refresh_token":"b"}`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "request body must be valid JSON"},
		// Attack: duplicate keys, the validator checks one value and the handler uses another.
		{name: "duplicate member", method: "POST", target: "/api/health-records", ct: jsonCT,
			body:     `{"kind":"note","title":"t","content":1,"kind":"` + long(10) + `"}`,
			wantCode: phr.EINVALID, wantField: "/kind", wantMessage: "is given more than once"},
		{name: "duplicate member inside content", method: "POST", target: "/api/health-records", ct: jsonCT,
			body:     `{"kind":"note","title":"t","content":{"a":{"` + testOpenAPIName + `":1,"` + testOpenAPIName + `":2}}}`,
			wantCode: phr.EINVALID, wantField: "/content", wantMessage: "has a property given more than once"},
		// Attack: overlong or invalid UTF-8 that decoders repair differently.
		{name: "invalid UTF-8", method: "POST", target: "/api/auth/refresh", ct: jsonCT,
			body:     "{\"refresh_token\":\"\xc0\xaf\"}",
			wantCode: phr.EINVALID, wantField: "", wantMessage: "request body must be valid JSON"},
		{name: "body on GET", method: "GET", target: "/api/me", ct: jsonCT, body: `{"id":"x"}`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "request body is not allowed"},

		// Content types.
		// Attack: a cross-site form post (text/plain needs no CORS preflight).
		{name: "text/plain", method: "POST", target: "/api/auth/login", ct: "text/plain",
			body: `{"email":"` + testOpenAPIEmail + `","password":"` + testOpenAPIPassword + `"}`, wantCode: openapiCodeUnsupportedMediaType},
		// Attack: a cross-site HTML form post.
		{name: "form", method: "POST", target: "/api/auth/login", ct: "application/x-www-form-urlencoded",
			body: "email=" + testOpenAPIEmail + "&password=" + testOpenAPIPassword, wantCode: openapiCodeUnsupportedMediaType},
		{name: "no content type", method: "POST", target: "/api/health-records", body: record, wantCode: openapiCodeUnsupportedMediaType},
		{name: "fhir+json where only json is accepted", method: "POST", target: "/api/health-records", ct: "application/fhir+json",
			body: record, wantCode: openapiCodeUnsupportedMediaType},
		{name: "non-UTF-8 charset", method: "POST", target: "/api/health-records", ct: "application/json; charset=iso-8859-1",
			body: record, wantCode: openapiCodeUnsupportedMediaType},
		{name: "malformed content type", method: "POST", target: "/api/health-records", ct: "application/json; ;;=",
			body: record, wantCode: openapiCodeUnsupportedMediaType},
		{name: "import as XML", method: "POST", target: "/api/imports/fhir", ct: "application/fhir+xml",
			body: `<Bundle/>`, wantCode: openapiCodeUnsupportedMediaType},

		// The FHIR import checks only for a JSON object.
		{name: "import array", method: "POST", target: "/api/imports/fhir", ct: "application/fhir+json", body: `[{"resourceType":"Bundle"}]`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "request body must be a JSON object"},
		{name: "import malformed", method: "POST", target: "/api/imports/fhir", ct: "application/fhir+json",
			body:     `{"resourceType":"Bundle","entry":[{"name":"` + testOpenAPIName + `"}`,
			wantCode: phr.EINVALID, wantField: "", wantMessage: "request body must be valid JSON"},
		{name: "import empty", method: "POST", target: "/api/imports/fhir", ct: "application/fhir+json",
			wantCode: phr.EINVALID, wantField: "", wantMessage: "request body is required"},

		// Query parameters.
		{name: "limit 0", method: "GET", target: "/api/test-results?limit=0",
			wantCode: phr.EINVALID, wantField: "limit", wantMessage: "must be at least 1"},
		{name: "limit -1", method: "GET", target: "/api/health-records?limit=-1",
			wantCode: phr.EINVALID, wantField: "limit", wantMessage: "must be at least 1"},
		// Attack: one huge page to scrape or exhaust the server.
		{name: "limit 101", method: "GET", target: "/api/test-results?limit=101",
			wantCode: phr.EINVALID, wantField: "limit", wantMessage: "must be at most 100"},
		{name: "limit abc", method: "GET", target: "/api/test-results?limit=abc",
			wantCode: phr.EINVALID, wantField: "limit", wantMessage: "must be an integer"},
		{name: "limit 1.5", method: "GET", target: "/api/health-records?limit=1.5",
			wantCode: phr.EINVALID, wantField: "limit", wantMessage: "must be an integer"},
		{name: "limit empty", method: "GET", target: "/api/health-records?limit=",
			wantCode: phr.EINVALID, wantField: "limit"},
		// Attack: parameter pollution, the validator checks the first value, a handler reads another.
		{name: "limit twice", method: "GET", target: "/api/test-results?limit=5&limit=5000",
			wantCode: phr.EINVALID, wantField: "limit", wantMessage: "must be given at most once"},
		// Attack: filter injection through a parameter the handler might pass on.
		{name: "unknown query parameter", method: "GET", target: "/api/test-results?user_id=" + testOpenAPIID,
			wantCode: phr.EINVALID, wantField: "user_id", wantMessage: "is not allowed"},
		{name: "unknown query parameter with free-text name", method: "GET", target: "/api/me?" + strings.ReplaceAll(testOpenAPIName, " ", "+") + "=1",
			wantCode: phr.EINVALID, wantField: "", wantMessage: "is not allowed"},
		{name: "malformed query", method: "GET", target: "/api/test-results?limit=%zz",
			wantCode: phr.EINVALID, wantField: "", wantMessage: "query string is malformed"},
		{name: "cursor too long", method: "GET", target: "/api/test-results?cursor=" + long(201),
			wantCode: phr.EINVALID, wantField: "cursor", wantMessage: "must be at most 200 characters"},
		{name: "code too long", method: "GET", target: "/api/test-results?code=" + long(65),
			wantCode: phr.EINVALID, wantField: "code", wantMessage: "must be at most 64 characters"},
		{name: "bad kind filter", method: "GET", target: "/api/health-records?kind=diary",
			wantCode: phr.EINVALID, wantField: "kind"},

		// Path parameters.
		{name: "id not a uuid", method: "GET", target: "/api/test-results/123",
			wantCode: phr.EINVALID, wantField: "id", wantMessage: "must be a UUID"},
		// Attack: SQL injection through the id.
		{name: "id sql injection", method: "DELETE", target: "/api/health-records/'%20OR%20'1'='1",
			wantCode: phr.EINVALID, wantField: "id", wantMessage: "must be a UUID"},
		{name: "id in braces", method: "GET", target: "/api/health-records/%7B" + testOpenAPIID + "%7D",
			wantCode: phr.EINVALID, wantField: "id", wantMessage: "must be at most 36 characters"},
		{name: "id without dashes", method: "GET", target: "/api/health-records/" + strings.ReplaceAll(testOpenAPIID, "-", "") + "abcd",
			wantCode: phr.EINVALID, wantField: "id", wantMessage: "must be a UUID"},
		{name: "id urn form", method: "GET", target: "/api/health-records/urn:uuid:" + testOpenAPIID,
			wantCode: phr.EINVALID, wantField: "id"},
		{name: "id with trailing junk", method: "PATCH", target: hr + "x", ct: jsonCT, body: `{"title":"t"}`,
			wantCode: phr.EINVALID, wantField: "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := testOpenAPIRequest(tt.method, tt.target, tt.ct, tt.body)
			err := v.validate(r, []byte(tt.body))
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("validate = %v, want nil", err)
				}
				return
			}
			var perr *phr.Error
			if !errors.As(err, &perr) {
				t.Fatalf("validate = %#v, want a *phr.Error", err)
			}
			// Attack: the error text quotes the submitted password or PHI back to the client and the logs.
			for _, secret := range testOpenAPISecrets {
				for what, text := range map[string]string{"Message": perr.Message, "Field": perr.Field, "Error()": err.Error()} {
					if strings.Contains(text, secret) {
						t.Fatalf("%s %q contains a submitted value", what, text)
					}
				}
			}
			if got, want := perr.Code, tt.wantCode; got != want {
				t.Fatalf("code = %q, want %q (%v)", got, want, err)
			}
			if got, want := perr.Field, tt.wantField; got != want {
				t.Fatalf("field = %q, want %q (%v)", got, want, err)
			}
			if tt.wantMessage != "" {
				if got, want := perr.Message, tt.wantMessage; got != want {
					t.Fatalf("message = %q, want %q", got, want)
				}
			}
			if perr.Message == "" {
				t.Fatalf("empty message")
			}
			if strings.ContainsAny(perr.Message, "{}\"") {
				t.Fatalf("message %q looks like it quotes a schema or a value", perr.Message)
			}
		})
	}
}

// TestOpenAPIValidateLeavesRequestAlone checks that the handler still gets the request as
// the client sent it: body unread, no defaults written into the query, headers unchanged.
func TestOpenAPIValidateLeavesRequestAlone(t *testing.T) {
	v := mustOpenAPIValidator(t)
	tests := []struct {
		name, method, target, ct, body string
	}{
		{name: "body", method: "POST", target: "/api/health-records", ct: "application/json; charset=utf-8",
			body: `{"kind":"note","title":"t","content":{"a":1}}`},
		{name: "query without default", method: "GET", target: "/api/test-results?code=718-7"},
		{name: "FHIR body", method: "POST", target: "/api/imports/fhir", ct: "application/fhir+json",
			body: `{"resourceType":"Bundle"}`},
		{name: "rejected body", method: "POST", target: "/api/health-records", ct: "application/json",
			body: `{"kind":"bad","title":"t","content":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testOpenAPIRequest(tt.method, tt.target, tt.ct, tt.body)
			rawQuery := r.URL.RawQuery
			_ = v.validate(r, []byte(tt.body))
			got, err := io.ReadAll(r.Body)
			if err != nil {
				t.Fatalf("read body after validate: %v", err)
			}
			if got, want := string(got), tt.body; got != want {
				t.Fatalf("body after validate = %q, want %q", got, want)
			}
			if got, want := r.URL.RawQuery, rawQuery; got != want {
				t.Fatalf("query after validate = %q, want %q", got, want)
			}
			if got, want := r.Header.Get("Content-Type"), tt.ct; got != want {
				t.Fatalf("Content-Type after validate = %q, want %q", got, want)
			}
		})
	}
}

// TestOpenAPIValidateSyntheaBundles feeds real patient bundles to the import route: they
// must pass, whatever their size, since the importer rather than the contract judges them.
func TestOpenAPIValidateSyntheaBundles(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "testdata", "fhir")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Skipf("no FHIR bundles in %s", dir)
	}
	v := mustOpenAPIValidator(t)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("POST", "/api/imports/fhir", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/fhir+json")
			if err := v.validate(r, body); err != nil {
				t.Fatalf("validate = %v, want nil", err)
			}
		})
	}
}

func TestNewRequestValidatorRejectsBrokenSpec(t *testing.T) {
	tests := []struct {
		name, spec string
	}{
		{name: "not YAML", spec: "openapi: [3.0.3"},
		{name: "missing info", spec: "openapi: 3.0.3\npaths: {}\n"},
		{name: "dangling ref", spec: "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n      responses:\n        '200': {$ref: '#/components/responses/Nope'}\n"},
		// Attack: a spec that makes the server fetch a file or URL at start-up.
		{name: "external ref", spec: "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n      responses:\n        '200': {$ref: 'file:///etc/passwd'}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, err := newRequestValidator([]byte(tt.spec)); err == nil {
				t.Fatalf("newRequestValidator = %v, nil; want an error", v)
			}
		})
	}
}

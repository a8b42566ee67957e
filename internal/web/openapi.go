package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// openapiCodeUnsupportedMediaType is the phr.Error code of a request body whose
// Content-Type the operation does not accept. It is not one of phr's codes because only the
// web layer meets it; the server answers it with 415. It has its own name here so this file
// stands alone, and the same value as the server's code for 415.
const openapiCodeUnsupportedMediaType = "unsupported_media_type"

// openapiBodyValidationExtension, set to openapiBodyJSONObject on an operation, limits the
// body check to "is a JSON object": the FHIR import takes bundles of megabytes that only
// the importer can validate, and walking them with the schema validator would cost twice.
const (
	openapiBodyValidationExtension = "x-vitalnexa-body-validation"
	openapiBodyJSONObject          = "json-object"
)

// requestValidator checks requests against the contract. It is built once from the spec
// and is safe for concurrent use: validate neither changes the validator nor the request
// it is given.
type requestValidator struct {
	router routers.Router
	// full validates parameters and body; paramsOnly skips the body for operations marked
	// with openapiBodyValidationExtension. Both are read-only after construction.
	full, paramsOnly *openapi3filter.Options
}

// newRequestValidator parses and validates spec (an OpenAPI 3.0 document) and returns a
// validator for it. It fails when the document does not load or is not a valid contract,
// so a broken spec stops the server at start-up rather than letting requests through.
func newRequestValidator(spec []byte) (*requestValidator, error) {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("web: load OpenAPI contract: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("web: OpenAPI contract: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("web: OpenAPI contract routes: %w", err)
	}
	schemaOptions := []openapi3.SchemaValidationOption{
		openapi3.WithStringFormatValidators(map[string]openapi3.StringFormatValidator{
			"email": openapi3.NewCallbackValidator(openapiValidateEmail),
			"uuid":  openapi3.NewCallbackValidator(openapiValidateUUID),
		}),
		// Keeps the schema and the value out of kin-openapi's own error text (property
		// names can still appear there), should an error ever be logged whole. Client
		// messages are built by openapiRequestError regardless.
		openapi3.DisableSchemaErrorDetails(),
	}
	options := func(excludeBody bool) *openapi3filter.Options {
		return &openapi3filter.Options{
			ExcludeRequestBody: excludeBody,
			// Authentication is the middleware's job; here only the shape of the request
			// is checked.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			// Defaults are the handlers' business: the validator must not rewrite the
			// query or the body.
			SkipSettingDefaults:     true,
			SchemaValidationOptions: schemaOptions,
		}
	}
	return &requestValidator{router: router, full: options(false), paramsOnly: options(true)}, nil
}

// validate checks method, path parameters, query and (when the operation has one) the
// JSON body, given the already-read body bytes; r.Body is not read and r is not changed.
//
// It returns nil or a *phr.Error:
//   - ENOTFOUND when the method and path are not an operation of the contract;
//   - code "unsupported_media_type" when the operation takes a body and the Content-Type
//     is not one it accepts (or names a charset other than UTF-8);
//   - EINVALID otherwise, with Field set to a JSON pointer into the body ("/email"), a
//     parameter name ("limit") or "" for the body as a whole, and a Message built only
//     from the field and the broken rule ("must be at most 200 characters"). Neither ever
//     quotes a value that was sent: that value may be PHI or a password.
//
// Unknown query parameters and query parameters given twice are rejected too, so a
// misspelt filter cannot silently widen a listing.
func (v *requestValidator) validate(r *http.Request, body []byte) error {
	// The filter reads the body and may write to the URL and headers: give it a copy.
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = nil
	req.ContentLength = int64(len(body))

	// "/api/me/" is not "/api/me" for the server's mux; say so here too, whatever router
	// kin-openapi is given.
	if strings.HasSuffix(req.URL.Path, "/") && req.URL.Path != "/" {
		return phr.Errorf(phr.ENOTFOUND, "no such API route")
	}
	route, pathParams, err := v.router.FindRoute(req)
	if err != nil && req.Method == http.MethodHead {
		// net/http serves HEAD with the GET handler; the contract lists only GET.
		req.Method = http.MethodGet
		route, pathParams, err = v.router.FindRoute(req)
	}
	if err != nil {
		return phr.Errorf(phr.ENOTFOUND, "no such API route")
	}
	op := route.Operation

	if err := openapiCheckQuery(req.URL.RawQuery, route); err != nil {
		return err
	}
	objectOnly := op.Extensions[openapiBodyValidationExtension] == openapiBodyJSONObject
	if openapiMultipart(op) {
		// An upload: the contract checks the parameters; the handler reads the one part and
		// proves what the file is.
		mt, params, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
			return phr.Errorf(openapiCodeUnsupportedMediaType, "content type must be multipart/form-data")
		}
		objectOnly = true
	} else if err := openapiCheckBody(req, op, body, objectOnly); err != nil {
		return err
	}

	options := v.full
	if objectOnly {
		options = v.paramsOnly
		// The filter's security check copies the whole body whatever it is told (for an
		// AuthenticationFunc to read); none of ours reads it, and the body is not
		// validated here, so it gets none: a 20 MiB upload is not copied once more.
		req.Body, req.ContentLength = http.NoBody, 0
	}
	input := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: pathParams,
		Route:      route,
		Options:    options,
	}
	if err := openapi3filter.ValidateRequest(req.Context(), input); err != nil {
		return openapiRequestError(err)
	}
	return nil
}

// openapiMultipart reports whether the operation takes a multipart/form-data body.
func openapiMultipart(op *openapi3.Operation) bool {
	return op.RequestBody != nil && op.RequestBody.Value != nil && op.RequestBody.Value.Content["multipart/form-data"] != nil
}

// openapiCheckQuery rejects a malformed query string, parameters the operation does not
// declare and declared parameters given more than once (the filter would silently use
// the first, the handler perhaps another).
func openapiCheckQuery(rawQuery string, route *routers.Route) error {
	if rawQuery == "" {
		return nil
	}
	values, err := url.ParseQuery(rawQuery)
	if err != nil {
		return phr.Errorf(phr.EINVALID, "query string is malformed")
	}
	declared := func(name string) bool {
		for _, params := range []openapi3.Parameters{route.Operation.Parameters, route.PathItem.Parameters} {
			if p := params.GetByInAndName(openapi3.ParameterInQuery, name); p != nil {
				return true
			}
		}
		return false
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names) // the same request always gets the same answer
	for _, name := range names {
		if !declared(name) {
			return phr.FieldErrorf(phr.EINVALID, openapiSafeName(name), "is not allowed")
		}
		if len(values[name]) > 1 {
			return phr.FieldErrorf(phr.EINVALID, name, "must be given at most once")
		}
	}
	return nil
}

// openapiCheckBody checks what the schema validator cannot see or would get wrong: a body
// where none is expected, the media type and charset, UTF-8, trailing data after the JSON
// value (the filter decodes only the first value) and repeated member names (the filter
// and a handler could read different values of the same name). For an operation marked
// objectOnly it is the whole body check. On success the Content-Type of req is the bare
// media type, so the filter picks the schema that was checked here.
func openapiCheckBody(req *http.Request, op *openapi3.Operation, body []byte, objectOnly bool) error {
	if op.RequestBody == nil || op.RequestBody.Value == nil {
		if len(body) > 0 {
			return phr.Errorf(phr.EINVALID, "request body is not allowed")
		}
		return nil
	}
	if len(body) == 0 {
		if op.RequestBody.Value.Required {
			return phr.Errorf(phr.EINVALID, "request body is required")
		}
		return nil
	}
	mediaType, params, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || op.RequestBody.Value.Content[mediaType] == nil {
		return phr.Errorf(openapiCodeUnsupportedMediaType, "content type is not supported")
	}
	if charset, ok := params["charset"]; ok && !strings.EqualFold(charset, "utf-8") {
		return phr.Errorf(openapiCodeUnsupportedMediaType, "charset must be utf-8")
	}
	req.Header.Set("Content-Type", mediaType)

	if !utf8.Valid(body) || !json.Valid(body) {
		return phr.Errorf(phr.EINVALID, "request body must be valid JSON")
	}
	if objectOnly {
		if trimmed := bytes.TrimLeft(body, " \t\r\n"); trimmed[0] != '{' {
			return phr.Errorf(phr.EINVALID, "request body must be a JSON object")
		}
		return nil
	}
	return openapiCheckDuplicateNames(body)
}

// openapiCheckDuplicateNames returns EINVALID when an object in body, which must be valid
// JSON, has the same member name twice. Field names the top-level member the repetition
// is in; names below it belong to free-form content and may be PHI, so they are not used.
func openapiCheckDuplicateNames(body []byte) error {
	type frame struct {
		names   map[string]bool // nil for an array
		wantKey bool
		key     string // the member being read, in an object
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].names != nil {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return phr.Errorf(phr.EINVALID, "request body must be valid JSON")
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{names: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
			continue
		}
		top := len(stack) - 1
		if top >= 0 && stack[top].names != nil && stack[top].wantKey {
			name, _ := tok.(string)
			if stack[top].names[name] {
				if top == 0 {
					return phr.FieldErrorf(phr.EINVALID, openapiPointer([]string{name}), "is given more than once")
				}
				return phr.FieldErrorf(phr.EINVALID, openapiPointer([]string{stack[0].key}), "has a property given more than once")
			}
			stack[top].names[name] = true
			stack[top].key = name
			stack[top].wantKey = false
			continue
		}
		valueDone()
	}
}

// openapiRequestError turns an error of openapi3filter.ValidateRequest into an EINVALID
// *phr.Error. It reads only the structure of the error (which parameter, which schema
// keyword, which path) and the schema's own bounds, never the error's text: kin-openapi's
// messages quote the offending value.
func openapiRequestError(err error) error {
	var reqErr *openapi3filter.RequestError
	if !errors.As(err, &reqErr) {
		return phr.Errorf(phr.EINVALID, "request is invalid")
	}
	var schemaErr *openapi3.SchemaError
	hasSchemaErr := errors.As(reqErr.Err, &schemaErr)

	if p := reqErr.Parameter; p != nil {
		switch {
		case errors.Is(reqErr.Err, openapi3filter.ErrInvalidRequired):
			return phr.FieldErrorf(phr.EINVALID, p.Name, "is required")
		case errors.Is(reqErr.Err, openapi3filter.ErrInvalidEmptyValue):
			return phr.FieldErrorf(phr.EINVALID, p.Name, "must not be empty")
		case hasSchemaErr:
			return phr.FieldErrorf(phr.EINVALID, p.Name, "%s", openapiSchemaMessage(schemaErr))
		}
		// A value that could not be parsed as the parameter's type.
		var schema *openapi3.Schema
		if p.Schema != nil {
			schema = p.Schema.Value
		}
		return phr.FieldErrorf(phr.EINVALID, p.Name, "%s", openapiTypeMessage(schema))
	}

	if reqErr.RequestBody != nil {
		switch {
		case errors.Is(reqErr.Err, openapi3filter.ErrInvalidRequired):
			return phr.Errorf(phr.EINVALID, "request body is required")
		case hasSchemaErr:
			return phr.FieldErrorf(phr.EINVALID, openapiSchemaErrorField(schemaErr), "%s", openapiSchemaMessage(schemaErr))
		}
		return phr.Errorf(phr.EINVALID, "request body must be valid JSON")
	}
	return phr.Errorf(phr.EINVALID, "request is invalid")
}

// openapiSchemaErrorField is the JSON pointer of the value a body SchemaError is about.
// For an unknown property that is the property itself, which kin-openapi names only in
// its message text, so it is found again from the schema and the object.
func openapiSchemaErrorField(e *openapi3.SchemaError) string {
	path := e.JSONPointer()
	if e.SchemaField == "properties" {
		if obj, ok := e.Value.(map[string]any); ok && e.Schema != nil {
			names := make([]string, 0, len(obj))
			for name := range obj {
				if _, known := e.Schema.Properties[name]; !known {
					names = append(names, name)
				}
			}
			// kin-openapi reports the first unknown name in sorted order.
			slices.Sort(names)
			if len(names) > 0 {
				path = append(path, names[0])
			}
		}
	}
	return openapiPointer(path)
}

// openapiSchemaMessage says which rule of the schema a value broke, using only the
// schema: "must be at most 200 characters", "must be one of: a, b".
func openapiSchemaMessage(e *openapi3.SchemaError) string {
	s := e.Schema
	if s == nil {
		return "is invalid"
	}
	switch e.SchemaField {
	case "type":
		return openapiTypeMessage(s)
	case "nullable":
		return "must not be null"
	case "required":
		return "is required"
	case "properties":
		return "is not allowed"
	case "enum":
		// kin-openapi checks enum before type: {"kind": 7} should hear about the type.
		if !openapiHasType(s, e.Value) {
			return openapiTypeMessage(s)
		}
		allowed := make([]string, 0, len(s.Enum))
		for _, v := range s.Enum {
			allowed = append(allowed, fmt.Sprint(v))
		}
		return "must be one of: " + strings.Join(allowed, ", ")
	case "minLength":
		if s.MinLength == 1 {
			return "must not be empty"
		}
		return fmt.Sprintf("must be at least %d characters", s.MinLength)
	case "maxLength":
		if s.MaxLength != nil {
			return fmt.Sprintf("must be at most %d characters", *s.MaxLength)
		}
	case "minimum":
		if s.Min != nil {
			return "must be at least " + openapiNumber(*s.Min)
		}
	case "maximum":
		if s.Max != nil {
			return "must be at most " + openapiNumber(*s.Max)
		}
	case "exclusiveMinimum":
		if s.Min != nil {
			return "must be greater than " + openapiNumber(*s.Min)
		}
	case "exclusiveMaximum":
		if s.Max != nil {
			return "must be less than " + openapiNumber(*s.Max)
		}
	case "minProperties":
		if s.MinProps == 1 {
			return "must have at least 1 property"
		}
		return fmt.Sprintf("must have at least %d properties", s.MinProps)
	case "maxProperties":
		if s.MaxProps != nil {
			return fmt.Sprintf("must have at most %d properties", *s.MaxProps)
		}
	case "minItems":
		return fmt.Sprintf("must have at least %d items", s.MinItems)
	case "maxItems":
		if s.MaxItems != nil {
			return fmt.Sprintf("must have at most %d items", *s.MaxItems)
		}
	case "uniqueItems":
		return "must not repeat items"
	case "format":
		switch s.Format {
		case "email":
			return "must be an email address"
		case "uuid":
			return "must be a UUID"
		case "date":
			return "must be a date (YYYY-MM-DD)"
		case "date-time":
			return "must be a date-time (RFC 3339)"
		}
		return "has an invalid format"
	case "pattern":
		return "has an invalid format"
	}
	return "is invalid"
}

// openapiTypeMessage names the JSON type schema requires.
func openapiTypeMessage(s *openapi3.Schema) string {
	if s == nil || s.Type == nil || len(*s.Type) != 1 {
		return "has the wrong type"
	}
	switch t := (*s.Type)[0]; t {
	case openapi3.TypeInteger, openapi3.TypeObject, openapi3.TypeArray:
		return "must be an " + t
	default:
		return "must be a " + t
	}
}

// openapiHasType reports whether value, as decoded from JSON, is of the one type schema
// names (true when it names none or several).
func openapiHasType(s *openapi3.Schema, value any) bool {
	if s.Type == nil || len(*s.Type) != 1 {
		return true
	}
	switch value.(type) {
	case string:
		return s.Type.Is(openapi3.TypeString)
	case bool:
		return s.Type.Is(openapi3.TypeBoolean)
	case json.Number, float64, int64, int:
		return s.Type.Is(openapi3.TypeNumber) || s.Type.Is(openapi3.TypeInteger)
	case map[string]any:
		return s.Type.Is(openapi3.TypeObject)
	case []any:
		return s.Type.Is(openapi3.TypeArray)
	}
	return false
}

func openapiNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// openapiNamePattern is what a client-chosen name (an unknown property or query parameter)
// must look like to be echoed in Field: an identifier, not free text that could be PHI.
var openapiNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

var openapiIndexPattern = regexp.MustCompile(`^[0-9]{1,9}$`)

// openapiSafeName returns name when it looks like an identifier, "" otherwise.
func openapiSafeName(name string) string {
	if openapiNamePattern.MatchString(name) {
		return name
	}
	return ""
}

// openapiPointer builds an RFC 6901 JSON pointer from path. It stops before the first
// token that is neither an identifier nor an array index, so free text never reaches Field.
func openapiPointer(path []string) string {
	var b strings.Builder
	for _, token := range path {
		if !openapiNamePattern.MatchString(token) && !openapiIndexPattern.MatchString(token) {
			break
		}
		b.WriteByte('/')
		b.WriteString(token) // identifiers hold no '~' or '/' to escape
	}
	return b.String()
}

// openapiValidateEmail accepts a bare addr-spec ("a@example.org"), not a display name
// form, and nothing with spaces or control characters. The error text is never shown.
func openapiValidateEmail(s string) error {
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || addr.Name != "" || strings.ContainsAny(s, " \t\r\n") {
		return errors.New("not an email address")
	}
	if at := strings.LastIndexByte(s, '@'); at <= 0 || at == len(s)-1 {
		return errors.New("not an email address")
	}
	return nil
}

var openapiUUIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// openapiValidateUUID accepts only the canonical 36-character form, so one id has one
// spelling in URLs, logs and audit rows.
func openapiValidateUUID(s string) error {
	if !openapiUUIDPattern.MatchString(s) {
		return errors.New("not a UUID")
	}
	return nil
}

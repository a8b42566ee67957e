package api

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// mustLoadSpec loads and validates Spec, failing the test when either step fails.
func mustLoadSpec(tb testing.TB) *openapi3.T {
	tb.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(Spec)
	if err != nil {
		tb.Fatalf("LoadFromData: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		tb.Fatalf("Validate: %v", err)
	}
	return doc
}

// specOperation is one operation of the contract with its method and path.
type specOperation struct {
	method, path string
	op           *openapi3.Operation
}

func specOperations(doc *openapi3.T) []specOperation {
	var ops []specOperation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, specOperation{method: method, path: path, op: op})
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		return ops[i].path+" "+ops[i].method < ops[j].path+" "+ops[j].method
	})
	return ops
}

func TestSpecLoadsAndValidates(t *testing.T) {
	doc := mustLoadSpec(t)
	if got, want := doc.OpenAPI, "3.0.3"; got != want {
		t.Fatalf("openapi version = %q, want %q", got, want)
	}
}

// TestSpecRoutes pins the route list: handlers are registered on these exact patterns, so
// a renamed or dropped path must fail here rather than turn into 404s in production.
func TestSpecRoutes(t *testing.T) {
	doc := mustLoadSpec(t)
	want := []string{
		"GET /healthz",
		"GET /readyz",
		"GET /privacy/do-not-sell",
		"POST /api/auth/register",
		"POST /api/auth/verify-email",
		"POST /api/auth/resend-verification",
		"POST /api/auth/token",
		"POST /api/auth/refresh",
		"POST /api/auth/login",
		"POST /api/auth/unlock",
		"POST /api/auth/confirm-email",
		"POST /api/auth/password-reset",
		"POST /api/auth/password-reset/confirm",
		"POST /api/auth/logout",
		"GET /api/me",
		"PATCH /api/me",
		"DELETE /api/me",
		"GET /api/me/history",
		"GET /api/me/export",
		"POST /api/me/password",
		"POST /api/me/email",
		"POST /api/me/mfa/totp",
		"POST /api/me/mfa/totp/confirm",
		"GET /api/me/access-history",
		"GET /api/me/privacy",
		"GET /api/me/consents",
		"PUT /api/me/consents",
		"GET /api/me/consents/history",
		"PUT /api/me/objections",
		"POST /api/me/restriction",
		"DELETE /api/me/restriction",
		"PUT /api/me/do-not-sell",
		"GET /api/me/privacy-requests",
		"GET /api/sessions",
		"DELETE /api/sessions",
		"DELETE /api/sessions/{id}",
		"GET /api/admin/users",
		"POST /api/admin/users/{id}/lock",
		"POST /api/admin/users/{id}/unlock",
		"POST /api/admin/users/{id}/disable",
		"POST /api/admin/users/{id}/enable",
		"DELETE /api/admin/users/{id}/sessions",
		"GET /api/admin/audit",
		"GET /api/admin/alerts",
		"GET /api/admin/privacy-requests",
		"POST /api/imports/fhir",
		"GET /api/test-results",
		"GET /api/test-results/{id}",
		"PATCH /api/test-results/{id}",
		"DELETE /api/test-results/{id}",
		"GET /api/test-results/{id}/history",
		"GET /api/files",
		"POST /api/files",
		"GET /api/files/{id}",
		"DELETE /api/files/{id}",
		"GET /api/files/{id}/content",
		"GET /api/health-records",
		"POST /api/health-records",
		"GET /api/health-records/{id}",
		"PATCH /api/health-records/{id}",
		"DELETE /api/health-records/{id}",
		"GET /api/health-records/{id}/history",
	}
	var got []string
	for _, o := range specOperations(doc) {
		got = append(got, o.method+" "+o.path)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("routes = %q\nwant %q", got, want)
	}
}

// TestSpecPublicOperations checks which operations need no credentials. Every other one
// must inherit the document's bearer-or-cookie requirement.
func TestSpecPublicOperations(t *testing.T) {
	doc := mustLoadSpec(t)
	public := map[string]bool{
		"GET /healthz":                          true,
		"GET /readyz":                           true,
		"GET /privacy/do-not-sell":              true,
		"POST /api/auth/register":               true,
		"POST /api/auth/verify-email":           true,
		"POST /api/auth/resend-verification":    true,
		"POST /api/auth/token":                  true,
		"POST /api/auth/refresh":                true,
		"POST /api/auth/login":                  true,
		"POST /api/auth/unlock":                 true,
		"POST /api/auth/confirm-email":          true,
		"POST /api/auth/password-reset":         true,
		"POST /api/auth/password-reset/confirm": true,
	}
	var schemes []string
	for _, req := range doc.Security {
		for name := range req {
			schemes = append(schemes, name)
		}
	}
	slices.Sort(schemes)
	if got, want := strings.Join(schemes, ","), "bearerAuth,cookieAuth"; got != want {
		t.Fatalf("document security schemes = %q, want %q (as alternatives)", got, want)
	}
	if got, want := len(doc.Security), 2; got != want {
		t.Fatalf("document security has %d requirements, want %d alternatives", got, want)
	}
	if got, want := doc.Components.SecuritySchemes["cookieAuth"].Value.Name, "__Host-vitalnexa_access"; got != want {
		t.Fatalf("cookie name = %q, want %q", got, want)
	}
	for _, o := range specOperations(doc) {
		name := o.method + " " + o.path
		t.Run(name, func(t *testing.T) {
			isPublic := o.op.Security != nil && len(*o.op.Security) == 0
			// Attack: a PHI endpoint marked `security: []` by mistake is served without a session.
			if got, want := isPublic, public[name]; got != want {
				t.Fatalf("public = %v, want %v", got, want)
			}
			if !isPublic && o.op.Security != nil {
				t.Fatalf("operation overrides the document security; it must inherit it")
			}
		})
	}
}

// TestSpecRequestBodiesAreClosedAndBounded walks every request schema: objects must refuse
// unknown properties and strings must have a maximum length, so a client cannot smuggle
// fields past the handlers or send unbounded strings into bcrypt, the cipher or the logs.
func TestSpecRequestBodiesAreClosedAndBounded(t *testing.T) {
	doc := mustLoadSpec(t)
	for _, o := range specOperations(doc) {
		t.Run(o.method+" "+o.path, func(t *testing.T) {
			for _, p := range o.op.Parameters {
				checkBounded(t, "parameter "+p.Value.Name, p.Value.Schema, false)
			}
			for _, p := range doc.Paths.Value(o.path).Parameters {
				checkBounded(t, "parameter "+p.Value.Name, p.Value.Schema, false)
			}
			if o.op.RequestBody == nil {
				return
			}
			// The FHIR import's bundle is free-form by design; the importer validates it.
			openObjects := o.op.Extensions["x-vitalnexa-body-validation"] == "json-object"
			for mediaType, mt := range o.op.RequestBody.Value.Content {
				// Uploads are the one multipart body; the handler proves what the file is.
				if !strings.HasSuffix(mediaType, "json") && !(o.path == "/api/files" && mediaType == "multipart/form-data") {
					t.Errorf("request media type %q is not JSON", mediaType)
				}
				checkBounded(t, "body", mt.Schema, !openObjects)
			}
		})
	}
}

// checkBounded reports every string schema under ref without maxLength and, when closed,
// every object schema that allows additional properties.
func checkBounded(t *testing.T, at string, ref *openapi3.SchemaRef, closed bool) {
	t.Helper()
	if ref == nil || ref.Value == nil {
		return
	}
	s := ref.Value
	if s.Type.Is(openapi3.TypeString) && s.MaxLength == nil && len(s.Enum) == 0 {
		t.Errorf("%s: string without maxLength", at)
	}
	if s.Type.Is(openapi3.TypeObject) {
		if closed && (s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has) {
			t.Errorf("%s: object without additionalProperties: false", at)
		}
		for name, p := range s.Properties {
			checkBounded(t, at+"/"+name, p, closed)
		}
	}
	if s.Items != nil {
		checkBounded(t, at+"/items", s.Items, closed)
	}
}

// TestSpecErrorResponsesAreProblems checks that every 4xx and 5xx answer is documented as
// application/problem+json with the Problem schema, so clients have one error shape.
func TestSpecErrorResponsesAreProblems(t *testing.T) {
	doc := mustLoadSpec(t)
	// /readyz answers 503 with its {status} body: load balancers read it, not people.
	exceptions := map[string]bool{"GET /readyz 503": true}
	for _, o := range specOperations(doc) {
		t.Run(o.method+" "+o.path, func(t *testing.T) {
			for status, resp := range o.op.Responses.Map() {
				if status[0] != '4' && status[0] != '5' && status != "default" {
					continue
				}
				if exceptions[o.method+" "+o.path+" "+status] {
					continue
				}
				mt := resp.Value.Content.Get("application/problem+json")
				if mt == nil || len(resp.Value.Content) != 1 {
					t.Errorf("%s: not documented as application/problem+json only", status)
					continue
				}
				if got, want := mt.Schema.Ref, "#/components/schemas/Problem"; got != want {
					t.Errorf("%s: schema = %q, want %q", status, got, want)
				}
			}
			if o.op.Responses.Value("500") == nil {
				t.Errorf("500 is not documented")
			}
		})
	}
}

// specWebCodes are the codes the web layer adds to phr's (internal/web cannot be imported
// here: it imports this package). mfa_required is a 401 whose password checked out.
var specWebCodes = []string{"unsupported_media_type", "method_not_allowed", "mfa_required", "unprocessable"}

// TestSpecProblemCodes checks that every error code of phr and of the web layer can be
// written in a Problem.
func TestSpecProblemCodes(t *testing.T) {
	doc := mustLoadSpec(t)
	problem := doc.Components.Schemas["Problem"].Value
	for _, field := range []string{"type", "title", "status", "code", "request_id"} {
		if !slices.Contains(problem.Required, field) {
			t.Errorf("Problem.%s is not required", field)
		}
	}
	var codes []string
	for _, v := range problem.Properties["code"].Value.Enum {
		codes = append(codes, v.(string))
	}
	phrCodes := []string{phr.EINVALID, phr.ENOTFOUND, phr.EUNAUTHORIZED, phr.EFORBIDDEN,
		phr.ECONFLICT, phr.ELOCKED, phr.ETOOMANY, phr.ETOOLARGE, phr.EUNAVAILABLE, phr.EINTERNAL}
	for _, code := range append(phrCodes, specWebCodes...) {
		t.Run(code, func(t *testing.T) {
			if !slices.Contains(codes, code) {
				t.Fatalf("code %q missing from Problem.code enum %q", code, codes)
			}
		})
	}
}

// TestSpecHealthRecordKinds keeps the contract's kinds and the domain's in step.
func TestSpecHealthRecordKinds(t *testing.T) {
	doc := mustLoadSpec(t)
	var kinds []string
	for _, v := range doc.Components.Schemas["HealthRecordKind"].Value.Enum {
		kinds = append(kinds, v.(string))
	}
	if got, want := kinds, phr.HealthRecordKinds; !slices.Equal(got, want) {
		t.Fatalf("HealthRecordKind enum = %q, want phr.HealthRecordKinds %q", got, want)
	}
}

// TestSpecAdminSeesNoPHI walks every answer of the admin operations: admins manage the
// security state of accounts and must never be shown who the account belongs to.
func TestSpecAdminSeesNoPHI(t *testing.T) {
	doc := mustLoadSpec(t)
	phi := []string{"email", "full_name", "name", "date_of_birth"}
	var walk func(t *testing.T, at string, ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool)
	walk = func(t *testing.T, at string, ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		seen[ref.Value] = true
		for name, p := range ref.Value.Properties {
			if slices.Contains(phi, name) {
				t.Errorf("%s/%s: PHI in an admin answer", at, name)
			}
			walk(t, at+"/"+name, p, seen)
		}
		walk(t, at+"/items", ref.Value.Items, seen)
		for _, group := range []openapi3.SchemaRefs{ref.Value.AllOf, ref.Value.AnyOf, ref.Value.OneOf} {
			for _, s := range group {
				walk(t, at, s, seen)
			}
		}
	}
	n := 0
	for _, o := range specOperations(doc) {
		if !strings.HasPrefix(o.path, "/api/admin/") {
			continue
		}
		n++
		t.Run(o.method+" "+o.path, func(t *testing.T) {
			if !slices.Equal(o.op.Tags, []string{"admin"}) {
				t.Errorf("tags = %q, want [admin]", o.op.Tags)
			}
			for status, resp := range o.op.Responses.Map() {
				for _, mt := range resp.Value.Content {
					walk(t, status, mt.Schema, map[*openapi3.Schema]bool{})
				}
			}
		})
	}
	if n == 0 {
		t.Fatal("no admin operations in the contract")
	}
}

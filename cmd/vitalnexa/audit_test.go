package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

func TestAuditVerifyAndExportOnALiveInstance(t *testing.T) {
	d, dir := startFreshDev(t)
	defer d.stop()
	token := d.register("audit@example.org", "Audit-Passw0rd!!")
	d.call("GET", "/api/test-results", token, "", nil)
	env := map[string]string{"VITALNEXA_DATA_DIR": dir}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"audit", "verify"}, getenv, nil, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "intact: ") {
		t.Fatalf("audit verify: %v %q", err, out.String())
	}
	out.Reset()
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if err := run(context.Background(), []string{"audit", "export", "--from", from, "--to", to}, getenv, nil, &out, io.Discard); err != nil {
		t.Fatalf("audit export: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	actions := map[string]bool{}
	for _, l := range lines {
		var r struct {
			Action string `json:"action"`
			Hash   string `json:"hash"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || len(r.Hash) != 64 {
			t.Fatalf("export line %q: %v", l, err)
		}
		actions[r.Action] = true
	}
	if !actions["POST /api/auth/register"] || !actions["GET /api/test-results"] {
		t.Fatalf("export lacks the requests made: %v", actions)
	}
	if strings.Contains(out.String(), "audit@example.org") {
		t.Fatal("the export holds an email")
	}
}

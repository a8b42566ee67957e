package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestCreateAdminOnTheDevelopmentInstance(t *testing.T) {
	d, dir := startFreshDev(t)
	defer d.stop()
	token := d.register("boss@example.org", "Boss-Passw0rd!!")
	env := map[string]string{"VITALNEXA_DATA_DIR": dir}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"users", "create-admin", "nobody@example.org"}, getenv, nil, &out, io.Discard); err == nil {
		t.Fatal("create-admin for an unknown email succeeded")
	}
	if err := run(context.Background(), []string{"users", "create-admin", "Boss@Example.org"}, getenv, nil, &out, io.Discard); err != nil {
		t.Fatalf("create-admin: %v", err)
	}
	if !strings.Contains(out.String(), "is now an admin") {
		t.Fatalf("output: %q", out.String())
	}
	// An admin without a second factor is still refused.
	if st, _ := d.call("GET", "/api/admin/users", token, "", nil); st != 403 {
		t.Fatalf("admin without MFA: %d, want 403", st)
	}
	if st, m := d.call("GET", "/api/me", token, "", nil); st != 200 || m["role"] != "admin" {
		t.Fatalf("me: %d %v", st, m)
	}
}

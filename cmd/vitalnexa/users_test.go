package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
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
	// The grant is in the audit trail, about the account it made an admin.
	env2, err := os.ReadFile(filepath.Join(dir, "dev.env"))
	m := devEnvURL.FindSubmatch(env2)
	if err != nil || m == nil {
		t.Fatalf("dev.env: %v", err)
	}
	conn, err := pgx.Connect(context.Background(), string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM audit_log a JOIN users u ON u.id = a.user_id
		WHERE a.action = 'EVENT admin.granted' AND u.role = 'admin' AND a.user_agent = 'vitalnexa users'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d audit rows for the grant (%v), want 1", n, err)
	}
	// An admin without a second factor is still refused.
	if st, _ := d.call("GET", "/api/admin/users", token, "", nil); st != 403 {
		t.Fatalf("admin without MFA: %d, want 403", st)
	}
	if st, m := d.call("GET", "/api/me", token, "", nil); st != 200 || m["role"] != "admin" {
		t.Fatalf("me: %d %v", st, m)
	}
}

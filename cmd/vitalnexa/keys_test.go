package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// keysCmd runs `vitalnexa keys ...` against the development instance in dir.
func keysCmd(ctx context.Context, dir string, args ...string) (string, error) {
	env := map[string]string{"VITALNEXA_DATA_DIR": dir}
	var out bytes.Buffer
	err := run(ctx, append([]string{"keys"}, args...), func(k string) string { return env[k] }, nil, &out, io.Discard)
	return out.String(), err
}

var statusLine = regexp.MustCompile(`(?m)^v(\d+) (\w+) (\d+)`)

func keyStatus(t *testing.T, dir string) map[string]string {
	t.Helper()
	out, err := keysCmd(context.Background(), dir, "status")
	if err != nil {
		t.Fatalf("keys status: %v", err)
	}
	m := map[string]string{}
	for _, l := range statusLine.FindAllStringSubmatch(out, -1) {
		m["v"+l[1]] = l[2] + " " + l[3]
	}
	return m
}

func TestKeyLifecycleOnALiveInstance(t *testing.T) {
	d, dir := startFreshDev(t)
	defer d.stop()
	token := d.register("keys@example.org", "Keys-Passw0rd!!")
	bundle := filepath.Join("..", "..", "..", "shared", "testdata", "fhir", "Alexis_Toy_68cd1181-6359-4047-a77f-a165d7912480.json")
	data, err := os.ReadFile(bundle)
	if err != nil {
		data, _ = os.ReadFile(filepath.Join("testdata", "small_bundle.json"))
	}
	if st, res := d.call("POST", "/api/imports/fhir", token, "application/fhir+json", data); st != 200 {
		t.Fatalf("import: %d %v", st, res)
	}
	before := d.listAll("/api/test-results", token)
	st0 := keyStatus(t, dir)
	if !strings.HasPrefix(st0["v1"], "active ") || st0["v1"] == "active 0" {
		t.Fatalf("status before rotation: %v", st0)
	}
	if out, err := keysCmd(context.Background(), dir, "rotate"); err != nil || !strings.Contains(out, "v2 is now the write key") {
		t.Fatalf("rotate: %q %v", out, err)
	}
	// A user keeps editing a record while the job runs.
	st, rec := d.postJSON("/api/health-records", token, map[string]any{"kind": "note", "title": "first", "content": "x"})
	if st != 201 {
		t.Fatalf("create: %d", st)
	}
	id := rec["id"].(string)
	var mu sync.Mutex
	lastTitle := "first"
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			title := fmt.Sprintf("edit %d", i)
			b := []byte(`{"title":"` + title + `"}`)
			if st, _ := d.call("PATCH", "/api/health-records/"+id, token, "application/json", b); st == 200 {
				mu.Lock()
				lastTitle = title
				mu.Unlock()
			}
			d.call("GET", "/api/test-results?limit=5", token, "", nil)
		}
	}()
	// The job is killed halfway, then resumed.
	kctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	keysCmd(kctx, dir, "reencrypt", "--wait")
	cancel()
	if out, err := keysCmd(context.Background(), dir, "reencrypt", "--wait"); err != nil {
		t.Fatalf("reencrypt: %v\n%s", err, out)
	}
	close(stop)
	wg.Wait()
	st1 := keyStatus(t, dir)
	if st1["v1"] != "retired 0" || !strings.HasPrefix(st1["v2"], "active ") {
		t.Fatalf("status after re-encryption: %v", st1)
	}
	// Revoking and destroying v1 leaves every value readable, as the user last wrote it.
	if out, err := keysCmd(context.Background(), dir, "revoke", "v1"); err != nil {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if out, err := keysCmd(context.Background(), dir, "destroy", "v1"); err != nil {
		t.Fatalf("destroy: %v %s", err, out)
	}
	if _, err := keysCmd(context.Background(), dir, "destroy", "v2"); err == nil {
		t.Fatal("the write key was destroyed")
	}
	time.Sleep(11 * time.Second) // the server's keyring follows within 10 s
	after := d.listAll("/api/test-results", token)
	if len(after) != len(before) {
		t.Fatalf("%d results after, %d before", len(after), len(before))
	}
	for i := range before {
		if before[i]["value"] != after[i]["value"] || before[i]["name"] != after[i]["name"] {
			t.Fatalf("result %d changed: %v → %v", i, before[i], after[i])
		}
	}
	st, got := d.call("GET", "/api/health-records/"+id, token, "", nil)
	mu.Lock()
	want := lastTitle
	mu.Unlock()
	if st != 200 || got["title"] != want {
		t.Fatalf("record after re-encryption: %d %v, the user last wrote %q", st, got["title"], want)
	}
	// Every key operation is in the audit trail.
	env, _ := os.ReadFile(filepath.Join(dir, "dev.env"))
	conn, err := pgx.Connect(context.Background(), strings.TrimSpace(strings.TrimPrefix(strings.Split(string(env), "\n")[1], "DATABASE_URL=")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, action := range []string{"EVENT key.rotated v2", "EVENT key.revoked v1", "EVENT key.destroyed v1"} {
		var n int
		conn.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = $1`, action).Scan(&n)
		if n != 1 {
			t.Errorf("%d audit rows %q, want 1", n, action)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
)

// TestNoHealthDataLeavesWithoutItsAuditRowEvenWhenKilled runs load against a serve process,
// kills it with SIGKILL at a random moment and starts another: every response with health
// data that a client received has its audit row, and the chain verifies.
func TestNoHealthDataLeavesWithoutItsAuditRowEvenWhenKilled(t *testing.T) {
	c := startServeCluster(t, 1, nil)
	a := c.procs[0]
	c.register(t, a, a, "crash@example.org", "Crash-Passw0rd!!")
	token, _ := a.signIn("crash@example.org", "Crash-Passw0rd!!")
	data, err := os.ReadFile(filepath.Join("testdata", "small_bundle.json"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", a.base+"/api/imports/fhir", bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := mpClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("import: %v %v", resp, err)
	}

	var mu sync.Mutex
	var served []string // request ids of 200 answers with health data the clients received
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", a.base+"/api/test-results?limit=5", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					continue // the server is gone
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 && len(body) > 0 {
					mu.Lock()
					served = append(served, resp.Header.Get("X-Request-Id"))
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
	a.killed = true
	a.cmd.Process.Kill()
	<-a.done
	close(stop)
	wg.Wait()
	if len(served) == 0 {
		t.Fatal("no health data was served before the kill")
	}

	// A new process on the same database: the trail is whole.
	b := startServeProc(t, "B", c.env)
	b.waitReady()
	owner := pgtest.MustPool(t, c.db.OwnerURL, 2)
	ctx := context.Background()
	missing := 0
	for _, id := range served {
		var n int
		if err := owner.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE request_id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d responses with health data have no audit row", missing, len(served))
	}
	res, err := audit.Verify(ctx, owner)
	if err != nil || !res.OK() {
		t.Fatalf("audit verify after the kill: %+v %v", res, err)
	}
	t.Logf("%d responses served before SIGKILL, each audited; %d rows verified", len(served), res.Rows)
}

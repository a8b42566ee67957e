package audit_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
)

// mustCopied writes 25 rows, copies them as the server role in segments of 10, adds 5 more
// and copies again: 4 segments.
func mustCopied(t *testing.T) (d *pgtest.Database, dir string, bucket *blob.Bucket, key []byte) {
	t.Helper()
	ctx := context.Background()
	d, _ = mustTrail(t, 25)
	dir = t.TempDir()
	bucket, err := fileblob.OpenBucket(dir, &fileblob.Options{Metadata: fileblob.MetadataDontWrite})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bucket.Close() })
	key = audit.SegmentKey(d.DB.Keys)
	res, err := audit.Copy(ctx, d.DB.Pool, bucket, key, 10)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 25 || res.Segments != 3 || res.LastSeq != 25 {
		t.Fatalf("copy = %+v, want 25 rows in 3 segments", res)
	}
	store := &postgres.AuditStore{Pool: d.DB.Pool}
	for i := 0; i < 5; i++ {
		if err := store.WriteAuditEvent(ctx, &phr.AuditEvent{Timestamp: time.Now(), Action: "GET /api/me", StatusCode: 200, RequestID: "late"}); err != nil {
			t.Fatal(err)
		}
	}
	if res, err = audit.Copy(ctx, d.DB.Pool, bucket, key, 10); err != nil || res.Rows != 5 || res.Segments != 1 {
		t.Fatalf("second copy = %+v, %v", res, err)
	}
	if res, err = audit.Copy(ctx, d.DB.Pool, bucket, key, 10); err != nil || res.Rows != 0 {
		t.Fatalf("copy with nothing new = %+v, %v", res, err)
	}
	return d, dir, bucket, key
}

func TestCopyThenVerifyIsIntact(t *testing.T) {
	t.Parallel()
	d, _, bucket, key := mustCopied(t)
	owner := pgtest.MustPool(t, d.OwnerURL, 2)
	rep, err := audit.VerifyCopy(context.Background(), owner, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Segments != 4 || rep.Rows != 30 {
		t.Fatalf("verify copy = %+v, want 30 intact rows in 4 segments", rep)
	}
}

func TestVerifyCopyNamesWhatWasChanged(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		table   string // run as a superuser with triggers off
		segment func(t *testing.T, dir string)
		want    string // in a problem
	}{
		// Attack: edit a row in the table after it was copied.
		{name: "row edited in the table", table: `UPDATE audit_log SET action = 'GET /healthz' WHERE seq = 3`, want: "(seq 3) differs from its copy"},
		// Attack: edit a row and rebuild the chain from it on, so that the chain verifies.
		{name: "row edited and chain rebuilt", table: `UPDATE audit_log SET user_agent = 'x' WHERE seq = 12;
			DO $$ DECLARE r record; prev bytea; BEGIN
				FOR r IN SELECT * FROM audit_log WHERE seq >= 12 ORDER BY seq LOOP
					SELECT hash INTO prev FROM audit_log WHERE seq = r.seq - 1;
					UPDATE audit_log a SET prev_hash = prev, hash = sha256(prev || convert_to(audit_row_content(a), 'UTF8')) WHERE a.seq = r.seq;
				END LOOP;
				UPDATE audit_chain_head SET hash = (SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1);
			END $$`, want: "(seq 12) differs from its copy"},
		// Attack: delete a row from the table.
		{name: "row deleted from the table", table: `DELETE FROM audit_log WHERE seq = 7`, want: "(seq 7) is in the copy"},
		// Attack: edit the copy itself.
		{name: "segment edited", segment: func(t *testing.T, dir string) {
			p := filepath.Join(dir, audit.SegmentName(11, 20))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, bytes.Replace(b, []byte("GET /api/test-results"), []byte("GET /api/test-resultz"), 1), 0o600); err != nil {
				t.Fatal(err)
			}
		}, want: "signature does not match"},
		// Attack: remove a whole segment from the copy.
		{name: "segment removed", segment: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, audit.SegmentName(11, 20))); err != nil {
				t.Fatal(err)
			}
		}, want: "does not follow segment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, dir, bucket, key := mustCopied(t)
			ctx := context.Background()
			if tc.table != "" {
				admin := pgtest.MustPool(t, d.AdminURL, 1)
				conn, err := admin.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Exec(ctx, tc.table); err != nil {
					t.Fatal(err)
				}
				conn.Release()
			}
			if tc.segment != nil {
				tc.segment(t, dir)
			}
			owner := pgtest.MustPool(t, d.OwnerURL, 2)
			rep, err := audit.VerifyCopy(ctx, owner, bucket, key)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), tc.want) {
				t.Fatalf("verify copy = %+v, want a problem with %q", rep, tc.want)
			}
			if tc.name == "row edited and chain rebuilt" {
				// The chain alone no longer tells: the copy does.
				if res, err := audit.Verify(ctx, owner); err != nil || !res.OK() {
					t.Fatalf("the rebuilt chain does not verify (%+v, %v): the test does not rebuild it well", res, err)
				}
			}
		})
	}
}

func TestVerifyCopyRefusesAnotherKey(t *testing.T) {
	t.Parallel()
	d, _, bucket, _ := mustCopied(t)
	owner := pgtest.MustPool(t, d.OwnerURL, 2)
	rep, err := audit.VerifyCopy(context.Background(), owner, bucket, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !strings.Contains(rep.Problems[0], "signature does not match") {
		t.Fatalf("verify copy under another key = %+v", rep)
	}
}

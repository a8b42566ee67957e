package postgres_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

func TestFileChunksAreBoundToTheirFileAndPlace(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ana := MustUser(t, d.DB, "ana@example.com")
	content := bytes.Repeat([]byte("0123456789abcdef"), (2*postgres.FileChunkSize+100)/16) // three chunks
	f := &phr.File{Name: "scan.txt", ContentType: "text/plain"}
	if err := d.DB.CreateFile(ana, f, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := d.DB.WriteFileContent(ana, f.ID, &got); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("round trip: %d bytes, %v", got.Len(), err)
	}
	// Attack: swap two chunks of the file in the database.
	owner := pgtest.MustPool(t, d.OwnerURL, 1)
	ctx := context.Background()
	tx, _ := owner.Begin(ctx)
	tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", phr.UserIDFromContext(ana))
	if _, err := tx.Exec(ctx, `UPDATE file_chunks c SET data = o.data FROM file_chunks o
		WHERE c.file_id = $1 AND o.file_id = $1 AND ((c.idx = 0 AND o.idx = 1) OR (c.idx = 1 AND o.idx = 0))`, f.ID); err != nil {
		t.Fatal(err)
	}
	tx.Commit(ctx)
	got.Reset()
	if err := d.DB.WriteFileContent(ana, f.ID, &got); phr.ErrorCode(err) != phr.EINTERNAL {
		t.Fatalf("download of swapped chunks: %v, want a failure", err)
	}
	// The quota holds.
	d.DB.FileQuota = int64(len(content)) + 10
	if err := d.DB.CreateFile(ana, &phr.File{Name: "more.txt", ContentType: "text/plain"}, bytes.NewReader(make([]byte, 100))); phr.ErrorCode(err) != phr.ETOOLARGE {
		t.Fatalf("upload over the quota: %v", err)
	}
}

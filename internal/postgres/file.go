package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.FileService = (*DB)(nil)

// FileChunkSize is the plaintext size of one stored chunk.
const FileChunkSize = 256 << 10

// DefaultFileQuota is a user's storage for documents when DB.FileQuota is 0.
const DefaultFileQuota = 200 << 20

func (db *DB) fileQuota() int64 {
	if db.FileQuota > 0 {
		return db.FileQuota
	}
	return DefaultFileQuota
}

func chunkRowID(fileID string, idx int) string { return fileID + ":" + strconv.Itoa(idx) }

// CreateFile encrypts r chunk by chunk into the user's file, in one transaction.
func (db *DB) CreateFile(ctx context.Context, f *phr.File, r io.Reader) error {
	f.ID, f.UserID, f.CreatedAt = uuid.NewString(), phr.UserIDFromContext(ctx), db.now()
	name, err := db.seal("files", "name", f.ID, f.Name)
	if err != nil {
		return err
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		// One upload at a time per user, so two cannot both fit under the quota.
		var used int64
		if _, err := tx.Exec(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, f.UserID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(size), 0) FROM files`).Scan(&used); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO files (id, user_id, name, content_type, size, chunks, sha256, created_at)
			VALUES ($1, $2, $3, $4, 0, 0, '\x', $5)`, f.ID, f.UserID, name, f.ContentType, f.CreatedAt); err != nil {
			return err
		}
		sum := sha256.New()
		buf := make([]byte, FileChunkSize)
		var size int64
		idx := 0
		for {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 {
				size += int64(n)
				if used+size > db.fileQuota() {
					return phr.Errorf(phr.ETOOLARGE, "This upload would exceed your storage of %d MiB.", db.fileQuota()>>20)
				}
				id := chunkRowID(f.ID, idx)
				data, err := db.Keys.Encrypt(buf[:n], keyring.Field{Table: "file_chunks", Column: "data", RowID: id})
				if err != nil {
					return err
				}
				sum.Write([]byte(data))
				if _, err := tx.Exec(ctx, `INSERT INTO file_chunks (id, file_id, user_id, idx, data) VALUES ($1, $2, $3, $4, $5)`,
					id, f.ID, f.UserID, idx, data); err != nil {
					return err
				}
				idx++
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				return fmt.Errorf("read upload: %w", rerr)
			}
		}
		f.Size = size
		_, err := tx.Exec(ctx, `UPDATE files SET size = $2, chunks = $3, sha256 = $4 WHERE id = $1`, f.ID, size, idx, sum.Sum(nil))
		return err
	})
}

const fileColumns = `id, user_id, name, content_type, size, created_at`

func (db *DB) scanFile(row pgx.Row) (*phr.File, error) {
	f := &phr.File{}
	var name string
	if err := row.Scan(&f.ID, &f.UserID, &name, &f.ContentType, &f.Size, &f.CreatedAt); err != nil {
		return nil, err
	}
	var err error
	f.Name, err = db.open("files", "name", f.ID, name)
	return f, err
}

// FindFiles returns one page of the user's files, newest first.
func (db *DB) FindFiles(ctx context.Context, f phr.FileFilter) ([]*phr.File, string, error) {
	return keysetPage(ctx, db, "files", f.Cursor, f.Limit,
		func(tx pgx.Tx, at *time.Time, id *string, inNulls bool, limit int) (pgx.Rows, error) {
			return tx.Query(ctx, `SELECT `+fileColumns+` FROM files WHERE `+fmt.Sprintf(keysetClause, "created_at")+`
				ORDER BY created_at DESC NULLS LAST, id DESC LIMIT $4`, at, id, inNulls, limit)
		},
		db.scanFile, func(f *phr.File) (time.Time, string) { return f.CreatedAt, f.ID })
}

// FindFileByID returns one of the user's files.
func (db *DB) FindFileByID(ctx context.Context, id string) (*phr.File, error) {
	if uuid.Validate(id) != nil {
		return nil, phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	var f *phr.File
	err := db.withUser(ctx, func(tx pgx.Tx) (err error) {
		f, err = db.scanFile(tx.QueryRow(ctx, `SELECT `+fileColumns+` FROM files WHERE id = $1`, id))
		return err
	})
	return f, err
}

// WriteFileContent decrypts the chunks in order into w.
func (db *DB) WriteFileContent(ctx context.Context, id string, w io.Writer) error {
	if uuid.Validate(id) != nil {
		return phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		var chunks int
		if err := tx.QueryRow(ctx, `SELECT chunks FROM files WHERE id = $1`, id).Scan(&chunks); err != nil {
			return err
		}
		for idx := 0; idx < chunks; idx++ {
			rowID := chunkRowID(id, idx)
			var data string
			if err := tx.QueryRow(ctx, `SELECT data FROM file_chunks WHERE id = $1`, rowID).Scan(&data); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					return &wrapped{phr.Errorf(phr.EINTERNAL, "A stored value could not be read."), fmt.Errorf("file %s: chunk %d missing", id, idx)}
				}
				return err
			}
			plain, err := db.Keys.Decrypt(data, keyring.Field{Table: "file_chunks", Column: "data", RowID: rowID})
			if err != nil {
				return &wrapped{phr.Errorf(phr.EINTERNAL, "A stored value could not be read."), fmt.Errorf("decrypt file_chunks.data of %s: %w", rowID, err)}
			}
			if _, err := w.Write(plain); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteFile removes one of the user's files.
func (db *DB) DeleteFile(ctx context.Context, id string) error {
	if uuid.Validate(id) != nil {
		return phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM files WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return phr.Errorf(phr.ENOTFOUND, "Not found.")
		}
		return nil
	})
}

package phr

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// File is an uploaded document. Name is PHI (it may name a condition) and is stored
// encrypted; ContentType is what the bytes proved to be, never what the client claimed.
type File struct {
	ID          string
	UserID      string
	Name        string
	ContentType string // "application/pdf" or "text/plain"
	Size        int64
	CreatedAt   time.Time
}

// LogValue keeps the name out of logs.
func (f File) LogValue() slog.Value { return slog.StringValue("file:" + f.ID) }

// FileFilter pages a user's files, newest first.
type FileFilter struct {
	Cursor string
	Limit  int // 0 for the default page size
}

// FileService stores the documents of the user in the context.
type FileService interface {
	// CreateFile stores f with the content read from r, encrypted in chunks. ETOOLARGE when
	// the user's storage quota would be exceeded.
	CreateFile(ctx context.Context, f *File, r io.Reader) error
	// FindFiles returns one page of the user's files, newest first, and the cursor of the
	// next page ("" after the last).
	FindFiles(ctx context.Context, f FileFilter) ([]*File, string, error)
	// FindFileByID returns a file's metadata; ENOTFOUND for another user's or a missing id.
	FindFileByID(ctx context.Context, id string) (*File, error)
	// WriteFileContent writes the decrypted content to w, chunk by chunk; a tampered chunk
	// is an error (EINTERNAL), never wrong bytes.
	WriteFileContent(ctx context.Context, id string, w io.Writer) error
	// DeleteFile removes the file and its content.
	DeleteFile(ctx context.Context, id string) error
}

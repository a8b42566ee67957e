package document_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/document"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// FuzzCheck asserts that Check never panics, answers every input in bounded time, and
// returns either a proven kind or a *phr.Error for the file field with one of its codes.
func FuzzCheck(f *testing.F) {
	for _, tc := range checkCases() {
		if data := tc.data(); len(data) < 64<<10 {
			f.Add(data)
		}
	}
	shared, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "testdata", "pdf", "*.pdf"))
	for _, p := range shared {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		kind, err := document.Check(data)
		// Generous: the inputs are small; a hang or quadratic blow-up shows up as seconds.
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Check took %v on %d bytes", d, len(data))
		}
		if err == nil {
			if kind != document.KindPDF && kind != document.KindText {
				t.Fatalf("kind = %q with nil error", kind)
			}
			return
		}
		if kind != "" {
			t.Fatalf("kind = %q with error %v", kind, err)
		}
		if c := phr.ErrorCode(err); c != phr.EINVALID && c != document.EUNSUPPORTED {
			t.Fatalf("code = %q (%v)", c, err)
		}
		if phr.ErrorField(err) != "file" || phr.ErrorMessage(err) == "" {
			t.Fatalf("error without field or message: %v", err)
		}
	})
}

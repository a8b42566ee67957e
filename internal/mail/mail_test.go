package mail

import (
	"context"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

func TestDirMailerWritesReadableEML(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "mail")
	d := &DirMailer{Dir: dir, From: "VitalNexa <no-reply@vitalnexa.test>"}
	link := "http://127.0.0.1:8080/verify-email?token=abc_DEF-123"
	if err := d.SendMail(context.Background(), &phr.Mail{To: "ana@example.com", Subject: "Verify your email — VitalNexa", Text: "Open this link:\n" + link + "\n"}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if got, want := len(files), 1; got != want {
		t.Fatalf("files = %d, want %d", got, want)
	}
	if strings.Contains(files[0], "ana") {
		t.Fatalf("file name %q holds the recipient", files[0])
	}
	fi, _ := os.Stat(files[0])
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Fatalf("mode = %v, want %v", got, want)
	}
	f, _ := os.Open(files[0])
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msg.Header.Get("To"), "<ana@example.com>"; got != want {
		t.Fatalf("To = %q, want %q", got, want)
	}
	subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if got, want := subj, "Verify your email — VitalNexa"; got != want {
		t.Fatalf("Subject = %q, want %q", got, want)
	}
	body, _ := ReadText(msg)
	if !strings.Contains(body, link) {
		t.Fatalf("body does not hold the link intact: %q", body)
	}
	raw, _ := os.ReadFile(files[0])
	if !strings.Contains(string(raw), link) {
		t.Fatalf("the raw .eml does not show the link as it is: %q", raw)
	}
	// Non-ASCII text is encoded, and decodes back.
	if err := d.SendMail(context.Background(), &phr.Mail{To: "ana@example.com", Subject: "x", Text: "Grüße\n"}); err != nil {
		t.Fatal(err)
	}
	files, _ = filepath.Glob(filepath.Join(dir, "*.eml"))
	f2, _ := os.Open(files[len(files)-1])
	defer f2.Close()
	m2, _ := mail.ReadMessage(f2)
	if got, _ := ReadText(m2); !strings.Contains(got, "Grüße") {
		t.Fatalf("non-ASCII body = %q", got)
	}
}

func TestFormatRefusesHeaderInjection(t *testing.T) {
	t.Parallel()
	for name, m := range map[string]*phr.Mail{
		"line break in subject adds a header": {To: "a@example.com", Subject: "hi\r\nBcc: evil@example.com"},
		"line break in recipient":             {To: "a@example.com\r\nBcc: evil@example.com", Subject: "hi"},
		"not an address":                      {To: "not an address", Subject: "hi"},
	} {
		if _, err := Format("x@example.com", m, fixedTime); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

var fixedTime = time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)

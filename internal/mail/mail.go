// Package mail sends the service's emails. In development every message is written as an
// .eml file to a directory instead of being sent, so a newcomer can open it.
package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// DirMailer writes each message as an RFC 5322 .eml file (mode 0600) into Dir.
type DirMailer struct {
	Dir  string
	From string
	Now  func() time.Time
}

var _ phr.Mailer = (*DirMailer)(nil)

// SendMail writes m to a new file in Dir. The file name holds a time and random bytes,
// never the recipient.
func (d *DirMailer) SendMail(ctx context.Context, m *phr.Mail) error {
	msg, err := Format(d.From, m, d.now())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	name := fmt.Sprintf("%s-%s.eml", d.now().UTC().Format("20060102T150405.000000000Z"), hex.EncodeToString(rnd[:]))
	tmp := filepath.Join(d.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, msg, 0o600); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	// Rename, so a reader watching the directory never sees half a message.
	return os.Rename(tmp, filepath.Join(d.Dir, name))
}

func (d *DirMailer) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Format renders m as an RFC 5322 message with a quoted-printable UTF-8 text body.
func Format(from string, m *phr.Mail, now time.Time) ([]byte, error) {
	to, err := mail.ParseAddress(m.To)
	if err != nil {
		return nil, phr.FieldErrorf(phr.EINVALID, "email", "is not an email address")
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return nil, fmt.Errorf("mail: subject holds a line break")
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", to.String())
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", m.Subject))
	fmt.Fprintf(&b, "Date: %s\r\n", now.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@vitalnexa>\r\n", hex.EncodeToString(rnd[:]))
	text := strings.ReplaceAll(m.Text, "\n", "\r\n")
	if plain7bit(text) {
		// Short ASCII lines go as they are, so a link stays readable (and clickable) in the raw file.
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		b.WriteString(text)
	} else {
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		w := quotedprintable.NewWriter(&b)
		if _, err := w.Write([]byte(text)); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

// plain7bit reports whether text may be sent without encoding: ASCII, lines of at most
// 998 bytes (RFC 5322).
func plain7bit(text string) bool {
	for _, line := range strings.Split(text, "\r\n") {
		if len(line) > 998 {
			return false
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; c >= 0x80 || (c < 0x20 && c != '\t') {
				return false
			}
		}
	}
	return true
}

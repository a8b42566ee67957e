package mail

import (
	"io"
	"mime/quotedprintable"
	"net/mail"
	"strings"
)

// ReadText returns the decoded text body of a message written by Format.
func ReadText(msg *mail.Message) (string, error) {
	var r io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(r)
	return strings.ReplaceAll(string(b), "\r\n", "\n"), err
}

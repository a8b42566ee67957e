// Package document decides what an uploaded file is from its bytes alone. The file name
// and the declared Content-Type are hints a client controls, so they are not inputs here:
// a file is accepted only as a well-formed PDF without active content or as plain UTF-8
// text. It imports phr and the standard library only.
package document

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Kinds: the content types Check can prove.
const (
	KindPDF  = "application/pdf"
	KindText = "text/plain"
)

// EUNSUPPORTED is the code of the *phr.Error that Check returns for bytes that are neither
// a PDF nor plain text (an executable, an archive, HTML, binary data). phr has no code for
// it because only uploads need it; the web layer answers it with 415 Unsupported Media Type.
const EUNSUPPORTED = "unsupported_media_type"

// fileField names the upload in every error Check returns.
const fileField = "file"

// Check returns the content type that data proves to be: KindPDF or KindText. It never
// panics and its work is bounded by len(data) (decompression is capped at
// maxInflateTotal), so it may be called on untrusted input of any size the caller accepts.
//
// Errors are *phr.Error with Field "file" and a message that is safe to show:
//   - Code EUNSUPPORTED for bytes that are neither PDF nor plain text (→ 415);
//   - Code phr.EINVALID for a PDF that is malformed, truncated, encrypted or carries active
//     content (JavaScript, launch/submit/import actions, embedded files, links to other
//     files, rich media, XFA), and for an empty file (→ 422).
func Check(data []byte) (kind string, err error) {
	if len(data) == 0 {
		return "", invalid("The file is empty.")
	}
	if bytes.HasPrefix(data, []byte("%PDF-")) {
		if err := checkPDF(data); err != nil {
			return "", err
		}
		return KindPDF, nil
	}
	for _, m := range binaryMagic {
		if bytes.HasPrefix(data, []byte(m.prefix)) {
			return "", unsupported("The file is " + m.what + ", not a PDF or plain text.")
		}
	}
	if err := checkText(data); err != nil {
		return "", err
	}
	return KindText, nil
}

// binaryMagic gives a clearer reason for common kinds that are neither PDF nor text.
// It is not what rejects them: checkText would refuse every one of them anyway.
var binaryMagic = []struct{ prefix, what string }{
	{"\x7fELF", "an executable (ELF)"},
	{"MZ", "an executable (Windows PE)"},
	{"\xfe\xed\xfa", "an executable (Mach-O)"},
	{"\xcf\xfa\xed\xfe", "an executable (Mach-O)"},
	{"\xce\xfa\xed\xfe", "an executable (Mach-O)"},
	{"#!", "a script"},
	{"PK\x03\x04", "an archive (ZIP)"},
	{"PK\x05\x06", "an archive (ZIP)"},
	{"PK\x07\x08", "an archive (ZIP)"},
	{"\x1f\x8b", "an archive (gzip)"},
	{"Rar!", "an archive (RAR)"},
	{"7z\xbc\xaf\x27\x1c", "an archive (7z)"},
	{"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office/OLE document"},
}

// markupPrefixes make text a document a browser would render and run, not plain text.
var markupPrefixes = []string{"<!doctype", "<html", "<head", "<body", "<script", "<svg", "<?xml", "<iframe", "<object", "<embed"}

// activeTextPrefixes are text formats that a program on the user's machine would run or
// render with active content, found after a BOM or white space as their readers allow.
// What they miss is still harmless as a download: it is named .txt (DownloadName).
var activeTextPrefixes = []struct{ prefix, what string }{
	{"#!", "a script"},
	{"{\\rtf", "an RTF document (it can embed objects)"},
	{"%!", "a PostScript program"},
	{"[internetshortcut]", "an Internet shortcut"},
	{"[desktop entry]", "a desktop launcher"},
	{"windows registry editor", "a registry file"},
	{"regedit4", "a registry file"},
}

const pdfHeaderInText = "The file holds a PDF header (%PDF- or %!PS-Adobe) after other bytes; a PDF must start with it, and text may not carry one."

func checkText(data []byte) error {
	// PDF readers look for the header in the first kilobyte (some further): a PDF behind a
	// line of text would open as a PDF with whatever actions it carries, unchecked.
	if bytes.Contains(data, []byte("%PDF-")) {
		return invalid(pdfHeaderInText)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return unsupported("The file contains binary data (NUL bytes); only PDF and plain UTF-8 text are accepted.")
	}
	if !utf8.Valid(data) {
		return unsupported("The file is not valid UTF-8 text; only PDF and plain UTF-8 text are accepted.")
	}
	head := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	head = bytes.TrimLeft(head, " \t\r\n\f\v")
	for _, p := range markupPrefixes {
		if hasPrefixFold(head, p) {
			return unsupported("The file is HTML/XML markup, not plain text.")
		}
	}
	for _, m := range activeTextPrefixes {
		if hasPrefixFold(head, m.prefix) {
			return unsupported("The file is " + m.what + ", not plain text.")
		}
	}
	// Acrobat also takes "%!PS-Adobe-N.n PDF-M.m" in the first kilobyte for a PDF header.
	if bytes.Contains(data[:min(len(data), 1024)], []byte("%!PS-Adobe")) {
		return invalid(pdfHeaderInText)
	}
	if containsFold(data, "<script") {
		return unsupported("The file contains a <script> element; it is not plain text.")
	}
	return nil
}

// hasPrefixFold reports whether b starts with the lower-case ASCII prefix p, ignoring case.
func hasPrefixFold(b []byte, p string) bool {
	return len(b) >= len(p) && bytes.EqualFold(b[:len(p)], []byte(p))
}

// containsFold reports whether b contains the lower-case ASCII string s (starting with
// '<'), ignoring case, without copying b.
func containsFold(b []byte, s string) bool {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], s[0])
		if j < 0 {
			return false
		}
		i += j
		if hasPrefixFold(b[i:], s) {
			return true
		}
		i++
	}
}

// DownloadName is the name a file that Check proved to be of kind is handed out under:
// name without Unicode format characters (a right-to-left override makes
// "invoice\u202Etxt.bat" show as "invoicetab.txt") and ending in the extension of its
// kind, added when it has another ("notes.bat" → "notes.bat.txt"), so that the user's
// system opens it as what its bytes are and never runs it.
func DownloadName(name, kind string) string {
	name = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) || unicode.IsControl(r) {
			return -1
		}
		return r
	}, name))
	if name == "" {
		name = "document"
	}
	ext := ".txt"
	if kind == KindPDF {
		ext = ".pdf"
	}
	if !strings.HasSuffix(strings.ToLower(name), ext) {
		name += ext
	}
	return name
}

func invalid(msg string) *phr.Error {
	return &phr.Error{Code: phr.EINVALID, Message: msg, Field: fileField}
}

func unsupported(msg string) *phr.Error {
	return &phr.Error{Code: EUNSUPPORTED, Message: msg, Field: fileField}
}

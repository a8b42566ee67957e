package document

import (
	"bytes"
	"compress/zlib"
	"errors"
	"io"
	"strconv"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Limits that keep checkPDF bounded on hostile input.
const (
	maxDepth          = 64       // nesting of arrays and dictionaries
	maxXrefSections   = 64       // /Prev chain of incremental updates
	maxObjects        = 1 << 22  // highest object number honoured in a cross-reference
	maxInflateTotal   = 64 << 20 // decompressed bytes per file
	maxInflateRatio   = 256      // decompressed/compressed, once past inflateRatioFloor
	inflateRatioFloor = 1 << 20
	tailWindow        = 1024 // startxref must be this close to the end
)

// forbidden maps PDF names that denote active content, or content that cannot be inspected,
// to the safe reason shown to the client. A name is refused wherever it appears as a
// dictionary key or value (after #xx escapes are decoded), which covers /S /JavaScript,
// /JS (...), /Type /EmbeddedFile and the /EmbeddedFiles name tree alike.
var forbidden = map[string]string{
	"JavaScript":    "The PDF contains JavaScript, which is not allowed.",
	"JS":            "The PDF contains JavaScript, which is not allowed.",
	"Launch":        "The PDF contains a launch action (it asks the viewer to start a program), which is not allowed.",
	"SubmitForm":    "The PDF contains a form-submit action, which is not allowed.",
	"ImportData":    "The PDF contains an import-data action, which is not allowed.",
	"EmbeddedFile":  "The PDF contains an embedded file, which is not allowed.",
	"EmbeddedFiles": "The PDF contains an embedded file, which is not allowed.",
	"RichMedia":     "The PDF contains rich media (Flash or video), which is not allowed.",
	"GoToR":         "The PDF contains an action that opens another file, which is not allowed.",
	"GoToE":         "The PDF contains an action that opens an embedded file, which is not allowed.",
	"XFA":           "The PDF contains an XFA form, which may carry scripts and is not allowed.",
}

func malformed(what string) *phr.Error {
	return invalid("The PDF is malformed or truncated: " + what + ".")
}

// ---- objects ----

type pdfName string

type pdfRef struct{ num, gen int64 }

type pdfDict map[pdfName]any

type pdfKeyword string

// pdfString stands for a literal or hex string; its value is never needed.
type pdfString struct{}

// ---- lexer ----

type tokKind int

const (
	tEOF tokKind = iota
	tInt
	tReal
	tName
	tString
	tKeyword
	tDictOpen
	tDictClose
	tArrOpen
	tArrClose
)

type token struct {
	kind tokKind
	i    int64
	s    string // decoded name or keyword
}

type lexer struct {
	data []byte
	pos  int
}

func isSpace(c byte) bool {
	return c == 0 || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' '
}

func isDelim(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '[', ']', '{', '}', '/', '%':
		return true
	}
	return false
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// skipSpace skips white space and comments.
func (l *lexer) skipSpace() {
	for l.pos < len(l.data) {
		c := l.data[l.pos]
		if isSpace(c) {
			l.pos++
			continue
		}
		if c == '%' {
			for l.pos < len(l.data) && l.data[l.pos] != '\n' && l.data[l.pos] != '\r' {
				l.pos++
			}
			continue
		}
		return
	}
}

func (l *lexer) next() (token, error) {
	l.skipSpace()
	if l.pos >= len(l.data) {
		return token{kind: tEOF}, nil
	}
	d := l.data
	c := d[l.pos]
	switch c {
	case '[':
		l.pos++
		return token{kind: tArrOpen}, nil
	case ']':
		l.pos++
		return token{kind: tArrClose}, nil
	case '{', '}', ')':
		return token{}, malformed("unexpected '" + string(c) + "'")
	case '<':
		if l.pos+1 < len(d) && d[l.pos+1] == '<' {
			l.pos += 2
			return token{kind: tDictOpen}, nil
		}
		l.pos++
		for l.pos < len(d) {
			c := d[l.pos]
			l.pos++
			if c == '>' {
				return token{kind: tString}, nil
			}
			if _, ok := unhex(c); !ok && !isSpace(c) {
				return token{}, malformed("bad hex string")
			}
		}
		return token{}, malformed("unterminated hex string")
	case '>':
		if l.pos+1 < len(d) && d[l.pos+1] == '>' {
			l.pos += 2
			return token{kind: tDictClose}, nil
		}
		return token{}, malformed("unexpected '>'")
	case '(':
		l.pos++
		depth := 1
		for l.pos < len(d) {
			c := d[l.pos]
			l.pos++
			switch c {
			case '\\':
				l.pos++ // the escaped byte, whatever it is, cannot open or close the string
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					return token{kind: tString}, nil
				}
			}
		}
		return token{}, malformed("unterminated string")
	case '/':
		l.pos++
		start := l.pos
		for l.pos < len(d) && !isSpace(d[l.pos]) && !isDelim(d[l.pos]) {
			l.pos++
		}
		raw := d[start:l.pos]
		if bytes.IndexByte(raw, '#') < 0 {
			return token{kind: tName, s: string(raw)}, nil
		}
		buf := make([]byte, 0, len(raw))
		for i := 0; i < len(raw); i++ {
			if raw[i] != '#' {
				buf = append(buf, raw[i])
				continue
			}
			if i+2 >= len(raw) {
				return token{}, malformed("bad #-escape in a name")
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return token{}, malformed("bad #-escape in a name")
			}
			buf = append(buf, hi<<4|lo)
			i += 2
		}
		return token{kind: tName, s: string(buf)}, nil
	}
	start := l.pos
	for l.pos < len(d) && !isSpace(d[l.pos]) && !isDelim(d[l.pos]) {
		l.pos++
	}
	word := d[start:l.pos]
	if isNumber(word) {
		if bytes.IndexByte(word, '.') < 0 {
			n, err := strconv.ParseInt(string(word), 10, 64)
			if err != nil {
				return token{}, malformed("number out of range")
			}
			return token{kind: tInt, i: n}, nil
		}
		return token{kind: tReal}, nil
	}
	return token{kind: tKeyword, s: string(word)}, nil
}

func isNumber(w []byte) bool {
	if len(w) > 0 && (w[0] == '+' || w[0] == '-') {
		w = w[1:]
	}
	digits, dots := 0, 0
	for _, c := range w {
		switch {
		case '0' <= c && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// ---- parser ----

// parser reads PDF objects and refuses forbidden names as it meets them.
type parser struct {
	lexer
}

func (p *parser) checkName(s string) error {
	if msg, ok := forbidden[s]; ok {
		return invalid(msg)
	}
	return nil
}

// value parses one object whose first token has already been read.
func (p *parser) value(t token, depth int) (any, error) {
	if depth > maxDepth {
		return nil, malformed("objects nested too deeply")
	}
	switch t.kind {
	case tInt:
		// n g R is a reference; anything else leaves the lexer where it was.
		save := p.pos
		t2, err := p.next()
		if err == nil && t2.kind == tInt {
			t3, err := p.next()
			if err == nil && t3.kind == tKeyword && t3.s == "R" {
				return pdfRef{t.i, t2.i}, nil
			}
		}
		p.pos = save
		return t.i, nil
	case tReal:
		return 0.0, nil
	case tString:
		return pdfString{}, nil
	case tName:
		if err := p.checkName(t.s); err != nil {
			return nil, err
		}
		return pdfName(t.s), nil
	case tArrOpen:
		var arr []any
		for {
			t, err := p.next()
			if err != nil {
				return nil, err
			}
			if t.kind == tArrClose {
				return arr, nil
			}
			if t.kind == tEOF {
				return nil, malformed("unterminated array")
			}
			v, err := p.value(t, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
	case tDictOpen:
		d := pdfDict{}
		for {
			t, err := p.next()
			if err != nil {
				return nil, err
			}
			if t.kind == tDictClose {
				return d, nil
			}
			if t.kind == tEOF {
				return nil, malformed("unterminated dictionary")
			}
			if t.kind != tName {
				return nil, malformed("dictionary key is not a name")
			}
			if err := p.checkName(t.s); err != nil {
				return nil, err
			}
			vt, err := p.next()
			if err != nil {
				return nil, err
			}
			if vt.kind == tDictClose || vt.kind == tEOF {
				return nil, malformed("dictionary key without a value")
			}
			v, err := p.value(vt, depth+1)
			if err != nil {
				return nil, err
			}
			d[pdfName(t.s)] = v
		}
	case tKeyword:
		switch t.s {
		case "true", "false":
			return t.s == "true", nil
		case "null":
			return nil, nil
		}
		return nil, malformed("unexpected keyword")
	case tEOF:
		return nil, malformed("unexpected end of file")
	}
	return nil, malformed("unexpected token")
}

func (p *parser) nextValue() (any, error) {
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	return p.value(t, 0)
}

// objHeader reads "n g obj" at the lexer position.
func (p *parser) objHeader() (num, gen int64, ok bool) {
	t1, err := p.next()
	if err != nil || t1.kind != tInt {
		return 0, 0, false
	}
	t2, err := p.next()
	if err != nil || t2.kind != tInt {
		return 0, 0, false
	}
	t3, err := p.next()
	if err != nil || t3.kind != tKeyword || t3.s != "obj" {
		return 0, 0, false
	}
	return t1.i, t2.i, true
}

// ---- the document ----

type xrefEntry struct {
	typ    int   // 1: at offset; 2: in object stream
	offset int64 // type 1: byte offset; type 2: number of the object stream
}

type pdfFile struct {
	data      []byte
	xref      map[int64]xrefEntry
	lengths   map[int64]int64 // resolved indirect /Length values
	resolving map[int64]bool
	inflated  int64
	objStms   map[int64]bool // object streams seen in the body
	root      int64          // object number of /Root in the newest trailer
}

func checkPDF(data []byte) error {
	if !validHeader(data) {
		return malformed("the header is not %PDF-1.0 … %PDF-2.0")
	}
	f := &pdfFile{
		data:      data,
		xref:      map[int64]xrefEntry{},
		lengths:   map[int64]int64{},
		resolving: map[int64]bool{},
		objStms:   map[int64]bool{},
	}
	start, err := f.startXref()
	if err != nil {
		return err
	}
	if err := f.readXrefChain(start); err != nil {
		return err
	}
	if err := f.checkXrefOffsets(); err != nil {
		return err
	}
	if err := f.scanBody(); err != nil {
		return err
	}
	for _, e := range f.xref {
		if e.typ == 2 && !f.objStms[e.offset] {
			return malformed("a cross-reference entry points into a missing object stream")
		}
	}
	return nil
}

func validHeader(d []byte) bool {
	if len(d) < 9 {
		return false
	}
	v := string(d[5:8])
	ok := (v[0] == '1' && v[1] == '.' && '0' <= v[2] && v[2] <= '7') || v == "2.0"
	return ok && (isSpace(d[8]) || d[8] == '%')
}

// startXref checks that the file ends with "startxref <offset> %%EOF" (plus white space)
// and returns the offset.
func (f *pdfFile) startXref() (int64, error) {
	d := f.data
	end := len(d)
	for end > 0 && isSpace(d[end-1]) {
		end--
	}
	if !bytes.HasSuffix(d[:end], []byte("%%EOF")) {
		return 0, malformed("it does not end with %%EOF (truncated, or data appended)")
	}
	from := end - tailWindow
	if from < 0 {
		from = 0
	}
	i := bytes.LastIndex(d[from:end], []byte("startxref"))
	if i < 0 {
		return 0, malformed("startxref is missing")
	}
	p := parser{lexer{data: d[:end], pos: from + i}}
	if t, err := p.next(); err != nil || t.kind != tKeyword || t.s != "startxref" {
		return 0, malformed("startxref is missing")
	}
	t, err := p.next()
	if err != nil || t.kind != tInt || t.i <= 0 || t.i >= int64(len(d)) {
		return 0, malformed("startxref offset is invalid")
	}
	if t2, err := p.next(); err != nil || t2.kind != tEOF {
		return 0, malformed("unexpected data after startxref")
	}
	return t.i, nil
}

func (f *pdfFile) readXrefChain(off int64) error {
	seen := map[int64]bool{}
	first := true
	for n := 0; ; n++ {
		if n >= maxXrefSections {
			return malformed("too many cross-reference sections")
		}
		if off <= 0 || off >= int64(len(f.data)) || seen[off] {
			return malformed("cross-reference offset is invalid")
		}
		seen[off] = true
		trailer, err := f.readXref(off)
		if err != nil {
			return err
		}
		if _, ok := trailer["Encrypt"]; ok {
			return invalid("The PDF is encrypted and cannot be inspected; upload an unencrypted copy.")
		}
		if first {
			root, ok := trailer["Root"].(pdfRef)
			if !ok {
				return malformed("the trailer has no /Root")
			}
			f.root = root.num
			first = false
		}
		if xs, ok := trailer["XRefStm"].(int64); ok {
			if _, err := f.readXref(xs); err != nil {
				return err
			}
		}
		prev, ok := trailer["Prev"]
		if !ok {
			break
		}
		pi, ok := prev.(int64)
		if !ok {
			return malformed("/Prev is not an offset")
		}
		off = pi
	}
	return nil
}

// readXref reads a cross-reference table or stream at off, merges its entries (older
// sections never override newer ones) and returns its trailer dictionary.
func (f *pdfFile) readXref(off int64) (pdfDict, error) {
	if off <= 0 || off >= int64(len(f.data)) {
		return nil, malformed("cross-reference offset is invalid")
	}
	p := &parser{lexer{data: f.data, pos: int(off)}}
	save := p.pos
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	if t.kind == tKeyword && t.s == "xref" {
		return f.readXrefTable(p)
	}
	p.pos = save
	if _, _, ok := p.objHeader(); !ok {
		return nil, malformed("startxref does not point at a cross-reference")
	}
	v, err := p.nextValue()
	if err != nil {
		return nil, err
	}
	dict, ok := v.(pdfDict)
	if !ok || dict["Type"] != pdfName("XRef") {
		return nil, malformed("startxref does not point at a cross-reference")
	}
	raw, err := f.streamData(p, dict)
	if err != nil {
		return nil, err
	}
	body, err := f.decode(dict, raw)
	if err != nil {
		return nil, err
	}
	return dict, f.readXrefStream(dict, body)
}

func (f *pdfFile) readXrefTable(p *parser) (pdfDict, error) {
	for {
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		if t.kind == tKeyword && t.s == "trailer" {
			v, err := p.nextValue()
			if err != nil {
				return nil, err
			}
			d, ok := v.(pdfDict)
			if !ok {
				return nil, malformed("the trailer is not a dictionary")
			}
			return d, nil
		}
		if t.kind != tInt {
			return nil, malformed("bad cross-reference table")
		}
		c, err := p.next()
		if err != nil {
			return nil, err
		}
		if c.kind != tInt || t.i < 0 || c.i < 0 || t.i+c.i > maxObjects ||
			c.i > int64(len(p.data)-p.pos)/18+1 {
			return nil, malformed("bad cross-reference table")
		}
		for k := int64(0); k < c.i; k++ {
			o, err1 := p.next()
			g, err2 := p.next()
			kw, err3 := p.next()
			if err1 != nil || err2 != nil || err3 != nil || o.kind != tInt || g.kind != tInt ||
				kw.kind != tKeyword || (kw.s != "n" && kw.s != "f") {
				return nil, malformed("bad cross-reference entry")
			}
			num := t.i + k
			if _, done := f.xref[num]; done {
				continue
			}
			if kw.s == "n" {
				f.xref[num] = xrefEntry{typ: 1, offset: o.i}
			} else {
				f.xref[num] = xrefEntry{typ: 0}
			}
		}
	}
}

func (f *pdfFile) readXrefStream(dict pdfDict, body []byte) error {
	w, ok := dict["W"].([]any)
	if !ok || len(w) != 3 {
		return malformed("cross-reference stream has no valid /W")
	}
	var widths [3]int
	row := 0
	for i, v := range w {
		n, ok := v.(int64)
		if !ok || n < 0 || n > 8 {
			return malformed("cross-reference stream has no valid /W")
		}
		widths[i] = int(n)
		row += int(n)
	}
	if row == 0 {
		return malformed("cross-reference stream has no valid /W")
	}
	size, ok := dict["Size"].(int64)
	if !ok || size < 0 || size > maxObjects {
		return malformed("cross-reference stream has no valid /Size")
	}
	index := []any{int64(0), size}
	if ix, ok := dict["Index"].([]any); ok {
		index = ix
	}
	if len(index)%2 != 0 {
		return malformed("cross-reference stream has a bad /Index")
	}
	pos := 0
	for i := 0; i < len(index); i += 2 {
		first, ok1 := index[i].(int64)
		count, ok2 := index[i+1].(int64)
		if !ok1 || !ok2 || first < 0 || count < 0 || first+count > maxObjects {
			return malformed("cross-reference stream has a bad /Index")
		}
		for k := int64(0); k < count; k++ {
			if pos+row > len(body) {
				return malformed("cross-reference stream is too short")
			}
			var fields [3]int64
			for j := 0; j < 3; j++ {
				var v int64
				for b := 0; b < widths[j]; b++ {
					v = v<<8 | int64(body[pos])
					pos++
				}
				fields[j] = v
			}
			if widths[0] == 0 {
				fields[0] = 1
			}
			num := first + k
			if _, done := f.xref[num]; done {
				continue
			}
			switch fields[0] {
			case 0:
				f.xref[num] = xrefEntry{typ: 0}
			case 1:
				f.xref[num] = xrefEntry{typ: 1, offset: fields[1]}
			case 2:
				f.xref[num] = xrefEntry{typ: 2, offset: fields[1]}
			default:
				// Reserved types are null references (ISO 32000-1, 7.5.8.3).
				f.xref[num] = xrefEntry{typ: 0}
			}
		}
	}
	return nil
}

// checkXrefOffsets verifies that every in-use entry points at "n g obj" with its own
// number and that /Root is an object in use.
func (f *pdfFile) checkXrefOffsets() error {
	if e, ok := f.xref[f.root]; !ok || e.typ == 0 {
		return malformed("/Root is not in the cross-reference")
	}
	for num, e := range f.xref {
		if e.typ != 1 {
			continue
		}
		if e.offset <= 0 || e.offset >= int64(len(f.data)) {
			return malformed("a cross-reference offset is outside the file")
		}
		p := parser{lexer{data: f.data, pos: int(e.offset)}}
		n, _, ok := p.objHeader()
		if !ok || n != num {
			return malformed("the cross-reference does not match the objects")
		}
	}
	return nil
}

// streamData returns the raw bytes of the stream whose dictionary was just parsed by p,
// leaving p after "endstream".
func (f *pdfFile) streamData(p *parser, dict pdfDict) ([]byte, error) {
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	if t.kind != tKeyword || t.s != "stream" {
		return nil, malformed("stream keyword expected")
	}
	d := p.data
	if p.pos < len(d) && d[p.pos] == '\r' {
		p.pos++
	}
	if p.pos < len(d) && d[p.pos] == '\n' {
		p.pos++
	}
	var n int64
	switch l := dict["Length"].(type) {
	case int64:
		n = l
	case pdfRef:
		n, err = f.resolveLength(l)
		if err != nil {
			return nil, err
		}
	default:
		return nil, malformed("a stream has no /Length")
	}
	if n < 0 || n > int64(len(d)-p.pos) {
		return nil, malformed("a stream is longer than the file")
	}
	start := p.pos
	p.pos += int(n)
	if t, err := p.next(); err != nil || t.kind != tKeyword || t.s != "endstream" {
		return nil, malformed("a stream's /Length does not match its data")
	}
	return d[start : start+int(n)], nil
}

// resolveLength returns the integer value of indirect object r, which must be a plain
// object in the body (not in an object stream).
func (f *pdfFile) resolveLength(r pdfRef) (int64, error) {
	if n, ok := f.lengths[r.num]; ok {
		return n, nil
	}
	e, ok := f.xref[r.num]
	if !ok || e.typ != 1 || f.resolving[r.num] {
		return 0, malformed("a stream's /Length cannot be resolved")
	}
	f.resolving[r.num] = true
	p := &parser{lexer{data: f.data, pos: int(e.offset)}}
	if _, _, ok := p.objHeader(); !ok {
		return 0, malformed("a stream's /Length cannot be resolved")
	}
	t, err := p.next()
	if err != nil || t.kind != tInt {
		return 0, malformed("a stream's /Length is not an integer")
	}
	f.lengths[r.num] = t.i
	return t.i, nil
}

// decode applies the stream's filters. Only FlateDecode (with PNG predictors) is
// supported; the streams decoded here (object and cross-reference streams) use nothing else
// in practice, and anything that cannot be decoded cannot be inspected.
func (f *pdfFile) decode(dict pdfDict, raw []byte) ([]byte, error) {
	var filters []any
	switch v := dict["Filter"].(type) {
	case nil:
	case pdfName:
		filters = []any{v}
	case []any:
		filters = v
	default:
		return nil, malformed("bad /Filter")
	}
	var parms []any
	switch v := dict["DecodeParms"].(type) {
	case nil:
	case pdfDict:
		parms = []any{v}
	case []any:
		parms = v
	default:
		return nil, malformed("bad /DecodeParms")
	}
	out := raw
	for i, flt := range filters {
		if flt != pdfName("FlateDecode") {
			return nil, invalid("The PDF uses a compression this service cannot inspect.")
		}
		var err error
		out, err = f.inflate(out)
		if err != nil {
			return nil, err
		}
		if i < len(parms) {
			if pd, ok := parms[i].(pdfDict); ok {
				out, err = unpredict(pd, out)
				if err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func (f *pdfFile) inflate(in []byte) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(in))
	if err != nil {
		return nil, malformed("a compressed stream is corrupt")
	}
	budget := maxInflateTotal - f.inflated
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(zr, budget+1))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, malformed("a compressed stream is corrupt")
	}
	if n > budget {
		return nil, invalid("The PDF decompresses to too much data.")
	}
	if n > inflateRatioFloor && n/int64(len(in)+1) > maxInflateRatio {
		return nil, invalid("The PDF contains a compression bomb.")
	}
	f.inflated += n
	return buf.Bytes(), nil
}

// unpredict undoes a PNG predictor (/Predictor 10–15); no predictor is a no-op.
func unpredict(pd pdfDict, in []byte) ([]byte, error) {
	pred, _ := pd["Predictor"].(int64)
	if pred <= 1 {
		return in, nil
	}
	if pred < 10 || pred > 15 {
		return nil, invalid("The PDF uses a compression this service cannot inspect.")
	}
	cols := int64(1)
	if c, ok := pd["Columns"].(int64); ok {
		cols = c
	}
	colors := int64(1)
	if c, ok := pd["Colors"].(int64); ok {
		colors = c
	}
	bpc := int64(8)
	if c, ok := pd["BitsPerComponent"].(int64); ok {
		bpc = c
	}
	if cols < 1 || cols > 1<<16 || colors < 1 || colors > 32 || (bpc != 1 && bpc != 2 && bpc != 4 && bpc != 8 && bpc != 16) {
		return nil, malformed("bad predictor parameters")
	}
	bpp := int((colors*bpc + 7) / 8)
	rowLen := int((cols*colors*bpc + 7) / 8)
	out := make([]byte, 0, len(in))
	prev := make([]byte, rowLen)
	cur := make([]byte, rowLen)
	for pos := 0; pos < len(in); pos += rowLen + 1 {
		if pos+rowLen+1 > len(in) {
			return nil, malformed("a predicted stream is truncated")
		}
		ft := in[pos]
		copy(cur, in[pos+1:pos+1+rowLen])
		for i := 0; i < rowLen; i++ {
			var a, b, c byte
			if i >= bpp {
				a = cur[i-bpp]
				c = prev[i-bpp]
			}
			b = prev[i]
			switch ft {
			case 0:
			case 1:
				cur[i] += a
			case 2:
				cur[i] += b
			case 3:
				cur[i] += byte((int(a) + int(b)) / 2)
			case 4:
				cur[i] += paeth(a, b, c)
			default:
				return nil, malformed("bad predictor row")
			}
		}
		out = append(out, cur...)
		prev, cur = cur, prev
	}
	return out, nil
}

func paeth(a, b, c byte) byte {
	p := int(a) + int(b) - int(c)
	pa, pb, pc := abs(p-int(a)), abs(p-int(b)), abs(p-int(c))
	switch {
	case pa <= pb && pa <= pc:
		return a
	case pb <= pc:
		return b
	}
	return c
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// scanBody reads the whole file front to back, whatever the cross-reference says, so an
// object left out of it cannot hide active content from the check. Stream data is skipped
// by /Length; object streams are decoded and their objects scanned too.
func (f *pdfFile) scanBody() error {
	p := &parser{lexer{data: f.data}}
	p.skipSpace() // the header and binary marker are comments
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		switch {
		case t.kind == tEOF:
			return nil
		case t.kind == tInt:
			g, err := p.next()
			if err != nil {
				return err
			}
			o, err := p.next()
			if err != nil {
				return err
			}
			if g.kind != tInt || o.kind != tKeyword || o.s != "obj" {
				return malformed("unexpected data between objects")
			}
			if err := f.scanObject(p, t.i); err != nil {
				return err
			}
		case t.kind == tKeyword && t.s == "xref":
			if err := f.skipXrefTable(p); err != nil {
				return err
			}
		case t.kind == tKeyword && t.s == "startxref":
			if t, err := p.next(); err != nil || t.kind != tInt {
				return malformed("startxref offset is invalid")
			}
		default:
			return malformed("unexpected data between objects")
		}
	}
}

func (f *pdfFile) skipXrefTable(p *parser) error {
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		switch {
		case t.kind == tInt, t.kind == tKeyword && (t.s == "n" || t.s == "f"):
		case t.kind == tKeyword && t.s == "trailer":
			v, err := p.nextValue()
			if err != nil {
				return err
			}
			d, ok := v.(pdfDict)
			if !ok {
				return malformed("the trailer is not a dictionary")
			}
			if _, ok := d["Encrypt"]; ok {
				return invalid("The PDF is encrypted and cannot be inspected; upload an unencrypted copy.")
			}
			return nil
		default:
			return malformed("bad cross-reference table")
		}
	}
}

func (f *pdfFile) scanObject(p *parser, num int64) error {
	v, err := p.nextValue()
	if err != nil {
		return err
	}
	save := p.pos
	t, err := p.next()
	if err != nil {
		return err
	}
	if t.kind == tKeyword && t.s == "stream" {
		dict, ok := v.(pdfDict)
		if !ok {
			return malformed("a stream without a dictionary")
		}
		p.pos = save
		raw, err := f.streamData(p, dict)
		if err != nil {
			return err
		}
		switch dict["Type"] {
		case pdfName("ObjStm"):
			body, err := f.decode(dict, raw)
			if err != nil {
				return err
			}
			if err := f.scanObjStm(dict, body); err != nil {
				return err
			}
			f.objStms[num] = true
		case pdfName("XRef"):
			if _, ok := dict["Encrypt"]; ok {
				return invalid("The PDF is encrypted and cannot be inspected; upload an unencrypted copy.")
			}
		}
		t, err = p.next()
		if err != nil {
			return err
		}
	}
	if t.kind != tKeyword || t.s != "endobj" {
		return malformed("an object is not closed by endobj")
	}
	return nil
}

// scanObjStm parses every object in a decoded object stream; the parser refuses forbidden
// names on the way. Objects are read in sequence rather than at their declared offsets, so
// overlapping offsets cannot make the work quadratic, and nothing in the stream is skipped.
func (f *pdfFile) scanObjStm(dict pdfDict, body []byte) error {
	n, ok1 := dict["N"].(int64)
	first, ok2 := dict["First"].(int64)
	if !ok1 || !ok2 || n < 0 || first < 0 || first > int64(len(body)) || n > int64(len(body))/2+1 {
		return malformed("bad object stream header")
	}
	hp := &parser{lexer{data: body[:first]}}
	for i := int64(0); i < n; i++ {
		a, err1 := hp.next()
		b, err2 := hp.next()
		if err1 != nil || err2 != nil || a.kind != tInt || b.kind != tInt || b.i < 0 || b.i > int64(len(body))-first {
			return malformed("bad object stream header")
		}
	}
	p := &parser{lexer{data: body[first:]}}
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t.kind == tEOF {
			return nil
		}
		if _, err := p.value(t, 0); err != nil {
			return err
		}
	}
}

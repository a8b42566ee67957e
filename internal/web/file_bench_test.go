package web_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/document"
	"github.com/vitalnexa/vitalnexa/internal/web"
)

// benchFileSize is the largest document the default configuration takes
// (VITALNEXA_UPLOAD_LIMIT_MB = 20).
const benchFileSize = 20 << 20

// BenchmarkFileTransfer moves one 20 MiB PDF through the real API — POST /api/files (the
// upload: read, proved a PDF, encrypted in 256 KiB chunks, stored in PostgreSQL) and
// GET /api/files/{id}/content (read, decrypted, streamed) — on a server wired as serve wires
// it (group-committed audit trail, real row-level security), next to a plain copy of the
// same bytes from one file to another on the same machine. Each sub-benchmark reports MB/s
// (b.SetBytes), B/op and allocs/op (with -benchmem; client and server together),
// heap_peak_MiB (the highest Go heap, live and not yet collected, above the idle heap while
// it ran), the CPU this process and the whole machine kept busy (PostgreSQL is most of the
// difference), and for the download the time to the first byte of the answer.
func BenchmarkFileTransfer(b *testing.B) {
	pdf := benchPDF(benchFileSize)
	if kind, err := document.Check(pdf); err != nil || kind != document.KindPDF {
		b.Fatalf("the benchmark's PDF is refused: %v %v", kind, err)
	}
	b.Run("copy", func(b *testing.B) { benchFileCopy(b, pdf) })

	e := mustBenchEnv(b, web.RateLimits{})
	token := e.mustVerifiedUser("files@example.com", 1)[0]
	body, contentType := benchMultipart(b, "lab-report.pdf", pdf)
	client := &http.Client{}
	b.Run("upload", func(b *testing.B) {
		b.SetBytes(benchFileSize)
		watch := startBenchWatch()
		b.ResetTimer()
		for range b.N {
			id := e.mustUpload(client, token, body, contentType)
			b.StopTimer()
			e.mustDelete(client, token, id)
			b.StartTimer()
		}
		b.StopTimer()
		watch.report(b)
	})
	b.Run("download", func(b *testing.B) {
		id := e.mustUpload(client, token, body, contentType)
		if sum := e.mustDownload(client, token, id, sha256.New()); !bytes.Equal(sum, benchSHA256(pdf)) {
			b.Fatal("the download differs from the upload")
		}
		b.SetBytes(benchFileSize)
		var ttfb time.Duration
		watch := startBenchWatch()
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			resp := e.mustGetContent(client, token, id)
			ttfb += time.Since(start)
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != benchFileSize {
				b.Fatalf("download: %d bytes, %v", n, err)
			}
		}
		b.StopTimer()
		watch.report(b)
		b.ReportMetric(benchMS(ttfb)/float64(b.N), "ttfb_ms")
		e.mustDelete(client, token, id)
	})
}

// benchFileCopy copies the bytes from one file to another in a temporary directory, as cp
// does (io.Copy between files is copy_file_range on Linux), without fsync: the test
// cluster does not fsync either.
func benchFileCopy(b *testing.B, data []byte) {
	dir := b.TempDir()
	src, dst := filepath.Join(dir, "src.pdf"), filepath.Join(dir, "dst.pdf")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	watch := startBenchWatch()
	b.ResetTimer()
	for range b.N {
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(dst)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil || n != int64(len(data)) {
			b.Fatalf("copy: %d bytes, %v", n, err)
		}
	}
	b.StopTimer()
	watch.report(b)
}

func (e *benchEnv) mustUpload(c *http.Client, token string, body []byte, contentType string) string {
	e.b.Helper()
	req, _ := http.NewRequest("POST", e.http.URL+"/api/files", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		e.b.Fatal(err)
	}
	defer resp.Body.Close()
	var f struct {
		ID   string `json:"id"`
		Size int64  `json:"size"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&f); err != nil || resp.StatusCode != http.StatusCreated || f.Size != benchFileSize {
		e.b.Fatalf("upload: %d %+v %v", resp.StatusCode, f, err)
	}
	return f.ID
}

func (e *benchEnv) mustGetContent(c *http.Client, token, id string) *http.Response {
	e.b.Helper()
	req, _ := http.NewRequest("GET", e.http.URL+"/api/files/"+id+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		e.b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		e.b.Fatalf("download: %d", resp.StatusCode)
	}
	return resp
}

// mustDownload reads the file's content into h and returns its sum.
func (e *benchEnv) mustDownload(c *http.Client, token, id string, h hash.Hash) []byte {
	e.b.Helper()
	resp := e.mustGetContent(c, token, id)
	defer resp.Body.Close()
	if _, err := io.Copy(h, resp.Body); err != nil {
		e.b.Fatal(err)
	}
	return h.Sum(nil)
}

func (e *benchEnv) mustDelete(c *http.Client, token, id string) {
	e.b.Helper()
	req, _ := http.NewRequest("DELETE", e.http.URL+"/api/files/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		e.b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		e.b.Fatalf("delete: %d", resp.StatusCode)
	}
}

// benchMultipart is the body of an upload of data in the field "file", built once.
func benchMultipart(b *testing.B, name string, data []byte) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="`+name+`"`)
	h.Set("Content-Type", "application/pdf")
	part, err := mw.CreatePart(h)
	if err != nil {
		b.Fatal(err)
	}
	part.Write(data)
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func benchSHA256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// benchPDF is a well-formed one-page PDF of exactly size bytes, as a scanner makes them: the
// page shows one greyscale image whose pixels (random, so as incompressible as a scan)
// fill the file; the page's content stream is padded with spaces to the exact size.
func benchPDF(size int) []byte {
	const width = 2048
	pixels := make([]byte, (size-1024)/width*width)
	rng := rand.New(rand.NewChaCha8([32]byte{'v', 'n'}))
	for i := 0; i+8 <= len(pixels); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			pixels[i+j] = byte(v >> (8 * j))
		}
	}
	build := func(pad int) []byte {
		var out bytes.Buffer
		var offsets []int
		obj := func(body string, stream []byte) {
			offsets = append(offsets, out.Len())
			fmt.Fprintf(&out, "%d 0 obj\n%s\n", len(offsets), body)
			if stream != nil {
				out.WriteString("stream\n")
				out.Write(stream)
				out.WriteString("\nendstream\n")
			}
			out.WriteString("endobj\n")
		}
		out.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
		obj("<< /Type /Catalog /Pages 2 0 R >>", nil)
		obj("<< /Type /Pages /Kids [3 0 R] /Count 1 >>", nil)
		obj("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /XObject << /Im1 5 0 R >> >> >>", nil)
		content := append([]byte("q 595 0 0 842 0 0 cm /Im1 Do Q"), bytes.Repeat([]byte(" "), pad)...)
		obj(fmt.Sprintf("<< /Length %d >>", len(content)), content)
		obj(fmt.Sprintf("<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 /Length %d >>",
			width, len(pixels)/width, len(pixels)), pixels)
		xref := out.Len()
		fmt.Fprintf(&out, "xref\n0 %d\n0000000000 65535 f \n", len(offsets)+1)
		for _, o := range offsets {
			fmt.Fprintf(&out, "%010d 00000 n \n", o)
		}
		fmt.Fprintf(&out, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offsets)+1, xref)
		return out.Bytes()
	}
	pad := 0
	for range 8 { // the padding changes a few numbers' widths; this settles in two rounds
		pdf := build(pad)
		if len(pdf) == size {
			return pdf
		}
		pad += size - len(pdf)
	}
	panic("benchPDF: size does not settle")
}

// benchWatch samples the Go heap every millisecond and the CPU over a sub-benchmark.
type benchWatch struct {
	idle uint64
	cpu  benchCPUSample
	stop chan struct{}
	peak chan uint64
}

func startBenchWatch() *benchWatch {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	w := &benchWatch{idle: sample[0].Value.Uint64(), cpu: readBenchCPU(), stop: make(chan struct{}), peak: make(chan uint64)}
	go func() {
		var peak uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-w.stop:
				w.peak <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *benchWatch) report(b *testing.B) {
	cpu := readBenchCPU().since(w.cpu)
	close(w.stop)
	peak := <-w.peak
	b.ReportMetric(float64(peak-min(peak, w.idle))/(1<<20), "heap_peak_MiB")
	b.ReportMetric(cpu.self, "self_cores")
	b.ReportMetric(cpu.machine, "machine_cores")
}

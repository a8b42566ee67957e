package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/devdb"
	vnmail "github.com/vitalnexa/vitalnexa/internal/mail"
)

// syncBuffer is a bytes.Buffer safe for the server's log writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// devInstance is `vitalnexa dev` running in this process, as `make run` starts it.
type devInstance struct {
	t      *testing.T
	base   string
	dir    string
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func startDev(t *testing.T, dir string) *devInstance {
	t.Helper()
	addr := freeAddr(t)
	env := map[string]string{"VITALNEXA_DATA_DIR": dir, "VITALNEXA_ADDR": addr}
	ctx, cancel := context.WithCancel(context.Background())
	d := &devInstance{t: t, base: "http://" + addr, dir: dir, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		d.done <- run(ctx, []string{"dev"}, func(k string) string { return env[k] }, nil, io.Discard, d.stderr)
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(d.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d
			}
		}
		select {
		case err := <-d.done:
			t.Fatalf("dev exited before serving: %v\n%s", err, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("dev did not answer /healthz in time\n%s", d.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startFreshDev starts `vitalnexa dev` on a new data directory, which it returns.
func startFreshDev(t *testing.T) (*devInstance, string) {
	t.Helper()
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755) // the postgres user (when we are root) must reach it
	os.Chmod(filepath.Dir(tmp), 0o755)
	dir := filepath.Join(tmp, "var")
	return startDev(t, dir), dir
}

// stop is Ctrl-C: the server and then the cluster stop cleanly.
func (d *devInstance) stop() {
	d.t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Fatalf("dev exited with %v\n%s", err, d.stderr.String())
		}
	case <-time.After(60 * time.Second):
		d.t.Fatal("dev did not stop")
	}
	if _, err := os.Stat(filepath.Join(d.dir, "pg", "data", "postmaster.pid")); err == nil {
		d.t.Fatal("PostgreSQL still running after dev stopped")
	}
}

func (d *devInstance) call(method, path, token, contentType string, body []byte) (int, map[string]any) {
	d.t.Helper()
	req, _ := http.NewRequest(method, d.base+path, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func (d *devInstance) postJSON(path, token string, v any) (int, map[string]any) {
	b, _ := json.Marshal(v)
	return d.call("POST", path, token, "application/json", b)
}

var linkToken = regexp.MustCompile(`verify-email\?token=([A-Za-z0-9_%-]+)`)

// register signs a user up, follows the mailed link and signs in.
func (d *devInstance) register(email, password string) string {
	d.t.Helper()
	if st, m := d.postJSON("/api/auth/register", "", map[string]string{"email": email, "password": password,
		"full_name": "Dev Tester", "date_of_birth": "1975-06-07"}); st != 202 {
		d.t.Fatalf("register: %d %v", st, m)
	}
	// The mail goes out just after the answer: look for it for a while.
	var token string
	for deadline := time.Now().Add(10 * time.Second); token == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(d.dir, "mail", "*.eml"))
		sort.Strings(files)
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			msg, err := mail.ReadMessage(bufio.NewReader(fh))
			if err == nil && strings.Contains(msg.Header.Get("To"), email) {
				text, _ := vnmail.ReadText(msg)
				if m := linkToken.FindStringSubmatch(text); m != nil {
					token = m[1]
				}
			}
			fh.Close()
		}
	}
	if token == "" {
		d.t.Fatalf("no verification mail for %s in %s", email, filepath.Join(d.dir, "mail"))
	}
	if st, m := d.postJSON("/api/auth/verify-email", "", map[string]string{"token": token}); st != 200 {
		d.t.Fatalf("verify: %d %v", st, m)
	}
	return d.login(email, password)
}

func (d *devInstance) login(email, password string) string {
	d.t.Helper()
	st, m := d.postJSON("/api/auth/token", "", map[string]string{"email": email, "password": password})
	if st != 200 {
		d.t.Fatalf("token: %d %v", st, m)
	}
	if m["token_type"] != "Bearer" || m["expires_in"] != 900.0 || m["refresh_token"] == "" {
		d.t.Fatalf("token response %v", m)
	}
	return m["access_token"].(string)
}

// countAll pages through a list and returns every item.
func (d *devInstance) listAll(path, token string) []map[string]any {
	d.t.Helper()
	var out []map[string]any
	cursor := ""
	for {
		st, m := d.call("GET", path+"?limit=100&cursor="+cursor, token, "", nil)
		if st != 200 {
			d.t.Fatalf("list %s: %d %v", path, st, m)
		}
		for _, it := range m["items"].([]any) {
			out = append(out, it.(map[string]any))
		}
		cursor, _ = m["next_cursor"].(string)
		if cursor == "" {
			return out
		}
	}
}

// bundleFacts is what the test reads from a bundle on its own, to check the import by.
type bundleFacts struct {
	labs         int
	labNames     map[string]bool
	patientNames []string
}

func readBundleFacts(t *testing.T, data []byte) bundleFacts {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource map[string]json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	f := bundleFacts{labNames: map[string]bool{}}
	for _, e := range b.Entry {
		var rt string
		json.Unmarshal(e.Resource["resourceType"], &rt)
		switch rt {
		case "Patient":
			var names []struct {
				Given  []string `json:"given"`
				Family string   `json:"family"`
			}
			json.Unmarshal(e.Resource["name"], &names)
			for _, n := range names {
				f.patientNames = append(f.patientNames, strings.Join(append(n.Given, n.Family), " "))
			}
		case "Observation":
			var cat []struct {
				Coding []struct{ Code string } `json:"coding"`
			}
			json.Unmarshal(e.Resource["category"], &cat)
			lab := false
			for _, c := range cat {
				for _, cd := range c.Coding {
					lab = lab || cd.Code == "laboratory"
				}
			}
			_, q := e.Resource["valueQuantity"]
			_, cc := e.Resource["valueCodeableConcept"]
			_, s := e.Resource["valueString"]
			if lab && (q || cc || s) {
				f.labs++
				var code struct {
					Text   string                     `json:"text"`
					Coding []struct{ Display string } `json:"coding"`
				}
				json.Unmarshal(e.Resource["code"], &code)
				f.labNames[code.Text] = true
				for _, c := range code.Coding {
					f.labNames[c.Display] = true
				}
			}
		}
	}
	return f
}

func pgDump(t *testing.T, dir string) string {
	t.Helper()
	env, err := os.ReadFile(filepath.Join(dir, "dev.env"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^DATABASE_URL=(.+)$`).FindSubmatch(env)
	if m == nil {
		t.Fatalf("dev.env has no DATABASE_URL: %s", env)
	}
	bin, err := devdb.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "pg_dump"), "--no-owner", "-d", string(m[1])).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return string(out)
}

func TestDevServesRealPatientDataEndToEnd(t *testing.T) {
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755) // the postgres user (when we are root) must reach it
	os.Chmod(filepath.Dir(tmp), 0o755)
	dir := filepath.Join(tmp, "var")
	d := startDev(t, dir)
	defer func() {
		if d != nil {
			d.cancel()
		}
	}()
	for _, name := range []string{"secrets.env", "dev.env"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	secrets, _ := os.ReadFile(filepath.Join(dir, "secrets.env"))
	// A second instance on the same data directory is refused and leaves the first alone.
	second := map[string]string{"VITALNEXA_DATA_DIR": dir, "VITALNEXA_ADDR": freeAddr(t)}
	err := run(context.Background(), []string{"dev"}, func(k string) string { return second[k] }, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another vitalnexa dev") {
		t.Fatalf("second dev on the same data directory: %v", err)
	}

	bundles, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "testdata", "fhir", "*.json"))
	if len(bundles) == 0 {
		t.Log("../shared/testdata/fhir is absent: importing the project's own small bundle only")
		bundles = []string{filepath.Join("testdata", "small_bundle.json")}
	}
	const password = "Dev-Tester-Passw0rd"
	var emails []string
	var labNames, patientNames []string
	total := map[string]int{}
	for i, path := range bundles {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		facts := readBundleFacts(t, data)
		email := fmt.Sprintf("patient%d@example.org", i)
		emails = append(emails, email)
		token := d.register(email, password)
		st, res := d.call("POST", "/api/imports/fhir", token, "application/fhir+json", data)
		if st != 200 {
			t.Fatalf("%s: import %d %v", filepath.Base(path), st, res)
		}
		if got, want := int(res["test_results_created"].(float64)), facts.labs; got != want {
			t.Errorf("%s: %d test results created, bundle has %d laboratory observations", filepath.Base(path), got, want)
		}
		results := d.listAll("/api/test-results", token)
		if got, want := len(results), facts.labs; got != want {
			t.Errorf("%s: lists %d test results, want %d", filepath.Base(path), got, want)
		}
		for _, r := range results {
			if r["code"] == "" || r["name"] == "" || r["value"] == "" || r["effective_at"] == nil {
				t.Fatalf("%s: incomplete result %v", filepath.Base(path), r)
			}
		}
		total["records"] += len(d.listAll("/api/health-records", token))
		// Importing the same bundle again changes nothing.
		st, res = d.call("POST", "/api/imports/fhir", token, "application/fhir+json", data)
		if st != 200 || res["test_results_created"] != 0.0 || res["health_records_created"] != 0.0 {
			t.Fatalf("%s: re-import %d %v", filepath.Base(path), st, res)
		}
		for n := range facts.labNames {
			// Names with a space cannot occur inside base64url ciphertext by chance.
			if strings.Contains(n, " ") || len(n) >= 12 {
				labNames = append(labNames, n)
			}
		}
		patientNames = append(patientNames, facts.patientNames...)
	}
	if total["records"] == 0 {
		t.Fatal("no health records were imported")
	}

	// A thief with a dump of the whole database learns no name, email or lab test.
	dump := pgDump(t, dir)
	if !strings.Contains(dump, "COPY public.test_results") {
		t.Fatal("the dump does not hold the test results table")
	}
	for _, leak := range append(append(emails, "Dev Tester", "1975-06-07", password), append(labNames, patientNames...)...) {
		if leak != "" && strings.Contains(dump, leak) {
			t.Errorf("the database dump contains %q", leak)
		}
	}
	if logs := d.stderr.String(); strings.Contains(logs, password) || strings.Contains(logs, emails[0]) {
		t.Error("the server log holds a password or an email")
	}

	d.stop()
	// A second start finds its data and its secrets again.
	d = startDev(t, dir)
	token := d.login(emails[0], password)
	if n := len(d.listAll("/api/test-results", token)); n == 0 {
		t.Fatal("no test results after a restart")
	}
	again, _ := os.ReadFile(filepath.Join(dir, "secrets.env"))
	if !bytes.Equal(secrets, again) {
		t.Fatal("secrets changed across restarts")
	}
	d.stop()
	d = nil
}

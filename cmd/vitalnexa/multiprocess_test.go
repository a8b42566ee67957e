package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vnmail "github.com/vitalnexa/vitalnexa/internal/mail"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
)

// serveChildEnv, set to 1, makes the test binary run `vitalnexa serve` instead of the tests:
// that is how TestServeProcessesShareState gets real, separate server processes.
const serveChildEnv = "VITALNEXA_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveChildEnv) == "1" {
		os.Exit(serveChild())
	}
	// A private cluster for the tests that want a fresh database (TestDevServes… starts its
	// own through `vitalnexa dev`).
	pgtest.Main(m)
}

// serveChild is main for a server process started by a test. The parent holds its stdin
// open: when the parent closes it, or dies, the server shuts down.
func serveChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := run(ctx, []string{"serve"}, os.Getenv, nil, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "vitalnexa:", err)
		return 1
	}
	return 0
}

// serveProc is one `vitalnexa serve` process.
type serveProc struct {
	t     *testing.T
	name  string
	base  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   *syncBuffer
	done  chan struct{}
	err   error // the process's exit, once done is closed
	// killed marks a process the test killed on purpose (SIGKILL): its exit is no failure.
	killed bool
}

// serveCluster is two or more serve processes sharing one database, mail directory and
// secrets, as behind a load balancer.
type serveCluster struct {
	procs   []*serveProc
	mailDir string
	env     map[string]string // what each process was started with
	db      *pgtest.Database
}

var mpClient = &http.Client{Timeout: 30 * time.Second}

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// startServeCluster starts n serve processes on a fresh database, with extra added to the
// environment of each.
func startServeCluster(t *testing.T, n int, extra map[string]string) *serveCluster {
	t.Helper()
	d := pgtest.MustDatabase(t)
	tmp := t.TempDir()
	c := &serveCluster{mailDir: filepath.Join(tmp, "mail"), db: d}
	env := map[string]string{
		serveChildEnv:               "1",
		"DATABASE_URL":              d.AppURL,
		"VITALNEXA_MASTER_KEY":      base64.StdEncoding.EncodeToString(d.MasterKey),
		"VITALNEXA_JWT_SECRET":      randomSecret(t),
		"VITALNEXA_PASSWORD_PEPPER": randomSecret(t),
		"VITALNEXA_DATA_DIR":        filepath.Join(tmp, "var"),
		"VITALNEXA_MAIL_DIR":        c.mailDir,
		"VITALNEXA_BREACH_CHECK":    "offline",
		// One public URL for all, as behind a load balancer: it is also the token issuer.
		"VITALNEXA_PUBLIC_URL":         "http://vitalnexa.test",
		"VITALNEXA_ADDR":               "127.0.0.1:0",
		"VITALNEXA_DATABASE_MAX_CONNS": "4",
	}
	for k, v := range extra {
		env[k] = v
	}
	c.env = env
	for i := 0; i < n; i++ {
		c.procs = append(c.procs, startServeProc(t, string(rune('A'+i)), env))
	}
	for _, p := range c.procs {
		p.waitReady()
	}
	return c
}

// startServeProc re-executes the test binary as a serve process. Only env configures it:
// VITALNEXA_* and DATABASE_URL variables of the test's own environment are dropped.
func startServeProc(t *testing.T, name string, env map[string]string) *serveProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "VITALNEXA_") || strings.HasSuffix(k, "DATABASE_URL") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &serveProc{t: t, name: name, cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

// waitReady waits for the process's listening address and a 200 from its /healthz.
func (p *serveProc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			p.t.Fatalf("serve %s exited before serving: %v\n%s", p.name, p.err, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("serve %s did not answer /healthz in time\n%s", p.name, p.log.String())
		}
		if p.base == "" {
			for _, line := range strings.Split(p.log.String(), "\n") {
				var l struct{ Msg, Addr string }
				if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" && l.Addr != "" {
					p.base = "http://" + l.Addr
				}
			}
		}
		if p.base != "" {
			if resp, err := mpClient.Get(p.base + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the process down as an operator would, killing it if it does not stop, and
// fails the test if it logged an error or did not exit cleanly.
func (p *serveProc) stop() {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("serve %s did not stop within 20s; killed", p.name)
	}
	if p.err != nil && !p.killed {
		p.t.Errorf("serve %s exited with %v", p.name, p.err)
	}
	logs := p.log.String()
	for _, line := range strings.Split(logs, "\n") {
		var l struct{ Level string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "ERROR" {
			p.t.Errorf("serve %s logged an error: %s", p.name, line)
		}
	}
	if p.t.Failed() || os.Getenv("MP_DEBUG") != "" {
		p.t.Logf("serve %s log:\n%s", p.name, logs)
	}
}

// mpResponse is an answer from a serve process.
type mpResponse struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends a request; token, when set, goes as a bearer token; userAgent, when set,
// replaces Go's.
func (p *serveProc) do(method, path, token, userAgent string, v any) mpResponse {
	p.t.Helper()
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			p.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, body)
	if err != nil {
		p.t.Fatal(err)
	}
	if v != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if userAgent != "" {
		req.Header.Set("User-Agent", userAgent)
	}
	resp, err := mpClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s on %s: %v", method, path, p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := mpResponse{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

func (p *serveProc) post(path string, v any) mpResponse { return p.do("POST", path, "", "", v) }

// signIn is POST /api/auth/token; it returns the access and refresh tokens.
func (p *serveProc) signIn(email, password string) (access, refresh string) {
	p.t.Helper()
	r := p.post("/api/auth/token", map[string]string{"email": email, "password": password})
	if r.status != 200 {
		p.t.Fatalf("sign-in on %s: %d %s", p.name, r.status, r.raw)
	}
	access, _ = r.body["access_token"].(string)
	refresh, _ = r.body["refresh_token"].(string)
	if access == "" || refresh == "" {
		p.t.Fatalf("sign-in on %s: no tokens in %s", p.name, r.raw)
	}
	return access, refresh
}

// mailsTo returns the texts of the mails to email with the subject, in the shared mail dir.
func (c *serveCluster) mailsTo(t *testing.T, email, subject string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.mailDir, "*.eml"))
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		msg, err := mail.ReadMessage(bufio.NewReader(fh))
		if err == nil && strings.Contains(msg.Header.Get("To"), email) {
			if dec, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err == nil && dec == subject {
				text, _ := vnmail.ReadText(msg)
				out = append(out, text)
			}
		}
		fh.Close()
	}
	return out
}

// waitMail waits for a mail to email with the subject; mail leaves just after the answer.
func (c *serveCluster) waitMail(t *testing.T, email, subject string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if texts := c.mailsTo(t, email, subject); len(texts) > 0 {
			return texts[0]
		}
	}
	t.Fatalf("no mail %q to %s in %s", subject, email, c.mailDir)
	return ""
}

// register signs email up on reg and verifies the address on verify.
func (c *serveCluster) register(t *testing.T, reg, verify *serveProc, email, password string) {
	t.Helper()
	if r := reg.post("/api/auth/register", map[string]string{"email": email, "password": password,
		"full_name": "Multi Process", "date_of_birth": "1970-01-02"}); r.status != 202 {
		t.Fatalf("register on %s: %d %s", reg.name, r.status, r.raw)
	}
	m := linkToken.FindStringSubmatch(c.waitMail(t, email, "Verify your email address for VitalNexa"))
	if m == nil {
		t.Fatal("the verification mail has no link")
	}
	if r := verify.post("/api/auth/verify-email", map[string]string{"token": m[1]}); r.status != 200 {
		t.Fatalf("verify on %s: %d %s", verify.name, r.status, r.raw)
	}
}

// withoutRequestID is a problem document without the one field that differs per request.
func withoutRequestID(r mpResponse) map[string]any {
	out := map[string]any{}
	for k, v := range r.body {
		if k != "request_id" {
			out[k] = v
		}
	}
	return out
}

// TestServeProcessesShareState runs separate `vitalnexa serve` processes on one database, as
// behind a load balancer, and checks that they act as one service: an attacker cannot
// escape lockout, a revoked token or a rate limit by having requests land on another process.
func TestServeProcessesShareState(t *testing.T) {
	const password = "Str0ng-Passw0rd!"
	c := startServeCluster(t, 2, nil)
	a, b := c.procs[0], c.procs[1]

	t.Run("lockout", func(t *testing.T) {
		t.Parallel()
		a, b := a.with(t), b.with(t)
		const email = "lockout@example.org"
		c.register(t, a, b, email, password)
		wrong := map[string]string{"email": email, "password": "Wr0ng-Passw0rd!"}
		// Guessing spread over both processes: 3 on A, 2 on B. Each process alone has seen
		// fewer than five failures; the account must lock all the same.
		var first mpResponse
		for i, p := range []*serveProc{a, b, a, b, a} {
			r := p.post("/api/auth/token", wrong)
			if r.status != 401 {
				t.Fatalf("wrong password %d on %s: %d %s", i+1, p.name, r.status, r.raw)
			}
			if i == 0 {
				first = r
			}
		}
		unlock := c.waitMail(t, email, "Your VitalNexa account was locked")
		if !strings.Contains(unlock, "/unlock?token=") {
			t.Fatalf("the lock mail has no unlock link:\n%s", unlock)
		}
		// The right password on either process: the answer of a wrong password.
		for _, p := range []*serveProc{a, b} {
			r := p.post("/api/auth/token", map[string]string{"email": email, "password": password})
			if r.status != 401 {
				t.Fatalf("right password on locked account on %s: %d %s", p.name, r.status, r.raw)
			}
			if got, want := withoutRequestID(r), withoutRequestID(first); !reflect.DeepEqual(got, want) {
				t.Errorf("locked answer on %s differs from a wrong password's:\n got %v\nwant %v", p.name, got, want)
			}
			for _, h := range []string{"Content-Type", "WWW-Authenticate", "Retry-After"} {
				if got, want := r.header.Get(h), first.header.Get(h); got != want {
					t.Errorf("locked answer on %s: %s %q, a wrong password's %q", p.name, h, got, want)
				}
			}
		}
		// The fifth failure locked the account once, on whichever process saw it: one mail.
		if got := len(c.mailsTo(t, email, "Your VitalNexa account was locked")); got != 1 {
			t.Errorf("%d lock mails, want 1", got)
		}
	})

	t.Run("revocation", func(t *testing.T) {
		t.Parallel()
		a, b := a.with(t), b.with(t)
		const email = "revocation@example.org"
		c.register(t, a, b, email, password)
		me := func(p *serveProc, token string) int { return p.do("GET", "/api/me", token, "", nil).status }
		refresh := func(p *serveProc, token, userAgent string) mpResponse {
			return p.do("POST", "/api/auth/refresh", "", userAgent, map[string]string{"refresh_token": token})
		}

		// Logout on B ends the session that A signed in.
		access, refreshToken := a.signIn(email, password)
		if got := me(b, access); got != 200 {
			t.Fatalf("A's access token on B: %d", got)
		}
		if r := b.do("POST", "/api/auth/logout", access, "", nil); r.status != 204 {
			t.Fatalf("logout on B: %d %s", r.status, r.raw)
		}
		if got := me(a, access); got != 401 {
			t.Errorf("access token on A after logout on B: %d, want 401", got)
		}
		if r := refresh(a, refreshToken, "client"); r.status != 401 {
			t.Errorf("refresh on A after logout on B: %d %s, want 401", r.status, r.raw)
		}

		// Two tabs of one browser refreshing at once, landing on different processes: the
		// second gets the successor the first got (the grace period), not a revocation.
		_, spent := a.signIn(email, password)
		r1 := refresh(a, spent, "browser tab")
		r2 := refresh(b, spent, "browser tab")
		if r1.status != 200 || r2.status != 200 {
			t.Fatalf("concurrent refresh of one client on A and B: %d %s / %d %s", r1.status, r1.raw, r2.status, r2.raw)
		}
		if r1.body["refresh_token"] != r2.body["refresh_token"] {
			t.Errorf("A and B gave the same client different successors for one refresh token")
		}

		// A spent refresh token in another client's hands, presented to the other process:
		// reuse is detected and the whole session ends, on A too.
		access, spent = a.signIn(email, password)
		r := refresh(a, spent, "victim")
		if r.status != 200 {
			t.Fatalf("refresh on A: %d %s", r.status, r.raw)
		}
		current, _ := r.body["access_token"].(string)
		next, _ := r.body["refresh_token"].(string)
		if got := me(a, current); got != 200 {
			t.Fatalf("refreshed access token on A: %d", got)
		}
		if r := refresh(b, spent, "thief"); r.status != 401 {
			t.Fatalf("spent refresh token on B from another client: %d %s, want 401", r.status, r.raw)
		}
		if got := me(a, current); got != 401 {
			t.Errorf("the session's current access token on A after reuse on B: %d, want 401", got)
		}
		if got := me(b, access); got != 401 {
			t.Errorf("the session's first access token on B after reuse: %d, want 401", got)
		}
		if r := refresh(a, next, "victim"); r.status != 401 {
			t.Errorf("the session's current refresh token on A after reuse on B: %d %s, want 401", r.status, r.raw)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		t.Parallel()
		// Its own database and processes: the per-address count must start at zero.
		const limit = 6
		c := startServeCluster(t, 2, map[string]string{"VITALNEXA_RATE_LIMIT_IP": strconv.Itoa(limit)})
		a, b := c.procs[0], c.procs[1]
		creds := map[string]string{"email": "nobody@example.org", "password": "Wr0ng-Passw0rd!"}
		// Alternating: each process alone sees only limit/2 requests.
		procs := []*serveProc{a, b}
		for i := 0; i < limit; i++ {
			p := procs[i%2]
			if r := p.post("/api/auth/token", creds); r.status != 401 {
				t.Fatalf("auth request %d on %s: %d %s, want 401", i+1, p.name, r.status, r.raw)
			}
		}
		for i := limit; i < limit+2; i++ {
			p := procs[i%2]
			r := p.post("/api/auth/token", creds)
			if r.status != 429 {
				t.Fatalf("auth request %d on %s: %d %s, want 429", i+1, p.name, r.status, r.raw)
			}
			if got, want := r.body["code"], "rate_limited"; got != want {
				t.Errorf("429 on %s: code %v, want %v", p.name, got, want)
			}
			if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 || n > 60 {
				t.Errorf("429 on %s: Retry-After %q, want 1..60 seconds", p.name, r.header.Get("Retry-After"))
			}
		}
		// Every auth endpoint shares the address's count.
		if r := a.post("/api/auth/verify-email", map[string]string{"token": "x"}); r.status != 429 {
			t.Errorf("verify-email on A past the limit: %d %s, want 429", r.status, r.raw)
		}
	})
}

// with is p reporting to t (a subtest) instead of the test that started it.
func (p *serveProc) with(t *testing.T) *serveProc {
	q := *p
	q.t = t
	return &q
}

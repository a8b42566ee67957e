package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/api"
	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/fhir"
	vnmail "github.com/vitalnexa/vitalnexa/internal/mail"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
	"github.com/vitalnexa/vitalnexa/internal/web"
)

// The login-flood scenario (BENCHMARKS.md says what each figure means).
const (
	floodClients = 50               // goroutines hammering POST /api/auth/token
	floodRampUp  = 3 * time.Second  // flood before measuring: past one auth.DefaultMaxWait, so the queue is in steady state
	phaseLength  = 10 * time.Second // each measured phase: idle, then under the flood
	readRate     = 50               // GET /api/test-results per second, open loop
	readSessions = 8                // sessions the reads rotate through (one user's session row is updated by every read)
	benchResults = 60               // test results imported; the default page shows 50 of them
)

// BenchmarkLoginFlood measures, in one run, the p50/p99 latency of GET /api/test-results
// with no other load (the baseline) and while floodClients goroutines send wrong passwords
// to POST /api/auth/token, together with how many of those sign-ins the server completed
// (401: a bcrypt comparison ran) and how many it shed (503 busy hasher, 429 rate limit).
//
// The server is wired like `vitalnexa serve`: bcrypt at auth.DefaultCost through the default
// bounded pool (NumCPU-1 workers, DefaultMaxWait, DefaultQueuePerWorker×workers), a main pool
// with pgx's default size and a separate audit pool of 4. The scenario runs once per
// invocation whatever b.N is, and takes far longer than the default -benchtime, so the
// framework never asks for a second one; ns/op is suppressed and B/op, allocs/op (with
// -benchmem) cover the whole scenario including setup.
//
// "limits=high" raises the per-address and per-account limits out of reach, as if the flood
// came from many addresses at many accounts, so that the bcrypt pool is what sheds load;
// "limits=default" keeps the defaults (60 per minute per address, 20 per 15 minutes per
// account), which a flood from one address exhausts in its first second.
func BenchmarkLoginFlood(b *testing.B) {
	high := web.RateLimits{PerIP: web.RateLimit{N: math.MaxInt32, Window: time.Minute},
		PerAccount: web.RateLimit{N: math.MaxInt32, Window: 15 * time.Minute}}
	for _, c := range []struct {
		name   string
		limits web.RateLimits
	}{
		{"limits=high", high},
		{"limits=default", web.RateLimits{}},
	} {
		b.Run(c.name, func(b *testing.B) { benchLoginFlood(b, c.limits) })
	}
}

func benchLoginFlood(b *testing.B, limits web.RateLimits) {
	e := mustBenchEnv(b, limits)
	email := "flooded@example.com"
	tokens := e.mustVerifiedUser(email, readSessions)
	e.mustImport(tokens[0], benchBundle(benchResults))

	reads := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4 * readSessions}}
	defer reads.CloseIdleConnections()
	// Warm up connections, statement caches and the first page's plan.
	for i := range 4 * readSessions {
		if st, _ := e.get(reads, tokens[i%len(tokens)]); st != http.StatusOK {
			b.Fatalf("GET /api/test-results: %d", st)
		}
	}

	loadBefore := benchLoadAverage()
	b.ResetTimer()
	idle := measureBenchReads(e, reads, tokens, phaseLength)

	floodCtx, stopFlood := context.WithCancel(context.Background())
	f := startBenchFlood(floodCtx, e, email)
	time.Sleep(floodRampUp)
	t0 := time.Now()
	flooded := measureBenchReads(e, reads, tokens, phaseLength)
	t1 := time.Now()
	stopFlood()
	answers := f.wait()
	b.StopTimer()

	window := t1.Sub(t0).Seconds()
	byStatus := map[int]int{}
	var compared, busy []time.Duration
	for _, a := range answers {
		if a.at.Before(t0) || a.at.After(t1) {
			continue
		}
		byStatus[a.status]++
		switch a.status {
		case http.StatusUnauthorized:
			compared = append(compared, a.took)
		case http.StatusServiceUnavailable:
			busy = append(busy, a.took)
		}
	}
	other := 0
	for st, n := range byStatus {
		if st != http.StatusUnauthorized && st != http.StatusServiceUnavailable && st != http.StatusTooManyRequests {
			other += n
		}
	}

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(byStatus[http.StatusUnauthorized])/window, "logins_per_s")
	b.ReportMetric(float64(byStatus[http.StatusServiceUnavailable]+byStatus[http.StatusTooManyRequests])/window, "shed_per_s")
	b.ReportMetric(float64(byStatus[http.StatusServiceUnavailable])/window, "503_per_s")
	b.ReportMetric(float64(byStatus[http.StatusTooManyRequests])/window, "429_per_s")
	b.ReportMetric(float64(other)/window, "other_per_s")
	b.ReportMetric(benchMS(benchPercentile(idle.latencies, 0.50)), "p50_ms_idle")
	b.ReportMetric(benchMS(benchPercentile(idle.latencies, 0.99)), "p99_ms_idle")
	b.ReportMetric(benchMS(benchPercentile(flooded.latencies, 0.50)), "p50_ms_under_flood")
	b.ReportMetric(benchMS(benchPercentile(flooded.latencies, 0.99)), "p99_ms_under_flood")
	b.ReportMetric(float64(idle.failed+flooded.failed), "get_errors")
	// Client, server and PostgreSQL share the machine; cores busy beyond this process's are
	// PostgreSQL's and anything else running at the time.
	b.ReportMetric(idle.cpu.self, "self_cores_idle")
	b.ReportMetric(flooded.cpu.self, "self_cores_under_flood")
	b.ReportMetric(idle.cpu.machine, "machine_cores_idle")
	b.ReportMetric(flooded.cpu.machine, "machine_cores_under_flood")

	b.Logf("server: %s, main pool %d conns, audit pool %d conns; limits %s",
		e.hasher, e.mainPoolSize, e.auditPoolSize, describeBenchLimits(e.limits))
	b.Logf("load average before: %s; after: %s", loadBefore, benchLoadAverage())
	for _, p := range []struct {
		name string
		r    benchReadings
	}{{"idle", idle}, {"under flood", flooded}} {
		l := p.r.latencies
		b.Logf("GET /api/test-results %-11s n=%d failed=%d p50=%.1fms p90=%.1fms p99=%.1fms max=%.1fms; sender lag max %.1fms; CPU: %s",
			p.name+":", len(l), p.r.failed, benchMS(benchPercentile(l, 0.5)), benchMS(benchPercentile(l, 0.9)), benchMS(benchPercentile(l, 0.99)),
			benchMS(benchPercentile(l, 1)), benchMS(p.r.lag), p.r.cpu)
	}
	b.Logf("flood answers in %.1fs window: %v (transport errors as status 0); 401 took p50=%.0fms, 503 took p50=%.0fms",
		window, byStatus, benchMS(benchPercentile(compared, 0.5)), benchMS(benchPercentile(busy, 0.5)))
}

// benchEnv is MustEnv's real server on a fresh database, for a benchmark, wired the way
// `vitalnexa serve` wires it rather than the way the tests do (see BenchmarkLoginFlood).
type benchEnv struct {
	b             *testing.B
	srv           *web.Server
	http          *httptest.Server
	mailDir       string
	hasher        *auth.Hasher
	limits        web.RateLimits
	mainPoolSize  int32
	auditPoolSize int32
}

// mustBenchEnv builds the server as serve does. trail, when not nil, replaces the audit
// writer serve uses (group commit on its own pool of four connections).
func mustBenchEnv(b *testing.B, limits web.RateLimits, trail ...func(auditPool *pgxpool.Pool) phr.AuditService) *benchEnv {
	b.Helper()
	d := pgtest.MustDatabase(b)
	mailDir := b.TempDir()
	// As serve.go: pgx's default pool size for requests, four connections for audit rows.
	pool := pgtest.MustPool(b, d.AppURL, 0)
	auditPool := pgtest.MustPool(b, d.AppURL, 4)
	db := &postgres.DB{Pool: pool, Keys: d.DB.Keys}
	// No Cost, Workers, MaxWait or MaxQueue: the production defaults.
	hasher, err := auth.NewHasher(auth.HasherOptions{Pepper: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	tokens, err := auth.NewTokenIssuer(auth.TokenOptions{Secrets: map[string][]byte{"k1": bytes.Repeat([]byte{9}, 32)},
		CurrentKID: "k1", Issuer: "http://vitalnexa.test", Audience: "vitalnexa-api", TTL: 15 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := web.NewServer(web.Options{
		// The JSON request log is written, as in production, but not kept.
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Users:  db, Accounts: db, Admin: db, Sessions: db, TestResults: db, HealthRecords: db, Imports: db, Files: db,
		RateLimiter: &postgres.RateLimiter{Pool: pool, Keys: d.DB.Keys}, Limits: limits,
		RefreshKey: bytes.Repeat([]byte{5}, 32),
		Audit:      auditFor(b, auditPool, trail),
		Mailer:     &vnmail.DirMailer{Dir: mailDir, From: "VitalNexa <no-reply@vitalnexa.test>"},
		Hasher:     hasher, Tokens: tokens,
		ParseFHIR: func(b []byte) (*phr.ImportBatch, error) { return fhir.ParseBundle(b, fhir.Options{}) },
		Spec:      api.Spec, PublicURL: "http://vitalnexa.test",
	})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	b.Cleanup(hs.Close)
	b.Cleanup(srv.Close)
	return &benchEnv{b: b, srv: srv, http: hs, mailDir: mailDir, hasher: hasher, limits: limits,
		mainPoolSize: pool.Config().MaxConns, auditPoolSize: auditPool.Config().MaxConns}
}

func auditFor(b *testing.B, pool *pgxpool.Pool, trail []func(*pgxpool.Pool) phr.AuditService) phr.AuditService {
	if len(trail) > 0 && trail[0] != nil {
		return trail[0](pool)
	}
	w := audit.NewWriter(pool, nil)
	b.Cleanup(w.Close)
	return w
}

// post sends a JSON (or FHIR) body and returns the status and body.
func (e *benchEnv) post(path, token, contentType string, body []byte) (int, []byte) {
	e.b.Helper()
	req, err := http.NewRequest("POST", e.http.URL+path, bytes.NewReader(body))
	if err != nil {
		e.b.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.b.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (e *benchEnv) postJSON(path string, v any) (int, map[string]any) {
	e.b.Helper()
	body, _ := json.Marshal(v)
	st, out := e.post(path, "", "application/json", body)
	var m map[string]any
	_ = json.Unmarshal(out, &m)
	return st, m
}

// mustVerifiedUser is MustVerifiedUser for a benchmark: register, follow the mailed link,
// then sign in sessions times; it returns one access token per session.
func (e *benchEnv) mustVerifiedUser(email string, sessions int) []string {
	e.b.Helper()
	if st, m := e.postJSON("/api/auth/register", map[string]string{"email": email, "password": testPassword,
		"full_name": "Person " + email, "date_of_birth": "1980-02-03"}); st != http.StatusAccepted {
		e.b.Fatalf("register: %d %v", st, m)
	}
	e.srv.Close() // mail goes out after the response: wait for it
	files, _ := filepath.Glob(filepath.Join(e.mailDir, "*.eml"))
	if len(files) != 1 {
		e.b.Fatalf("register sent %d mails, want 1", len(files))
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		e.b.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		e.b.Fatal(err)
	}
	text, _ := vnmail.ReadText(msg)
	link := tokenInLink.FindStringSubmatch(text)
	if link == nil {
		e.b.Fatalf("no verification link in the mail: %q", text)
	}
	if st, m := e.postJSON("/api/auth/verify-email", map[string]string{"token": link[1]}); st != http.StatusOK {
		e.b.Fatalf("verify: %d %v", st, m)
	}
	var out []string
	for range sessions {
		st, m := e.postJSON("/api/auth/token", map[string]string{"email": email, "password": testPassword})
		if st != http.StatusOK {
			e.b.Fatalf("token: %d %v", st, m)
		}
		out = append(out, m["access_token"].(string))
	}
	return out
}

func (e *benchEnv) mustImport(token, bundle string) {
	e.b.Helper()
	st, body := e.post("/api/imports/fhir", token, "application/fhir+json", []byte(bundle))
	if st != http.StatusOK {
		e.b.Fatalf("import: %d %s", st, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m["test_results_created"] != float64(benchResults) {
		e.b.Fatalf("import = %s", body)
	}
}

// get reads the first page of test results; status 0 is a transport error.
func (e *benchEnv) get(c *http.Client, token string) (int, error) {
	req, err := http.NewRequest("GET", e.http.URL+"/api/test-results", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

type benchReadings struct {
	latencies []time.Duration // of the reads answered 200, from the moment each was sent
	failed    int             // other answers and transport errors
	lag       time.Duration   // the latest any read was sent after its scheduled time
	cpu       benchCPU        // during the phase
}

// measureBenchReads sends readRate GETs per second for d on a fixed schedule, each in its own
// goroutine, so a slow answer delays no later request (no coordinated omission), rotating
// through the tokens. A send that falls behind its schedule is made at once, never dropped;
// lag records how far behind the sender fell (a sign that this process was starved of CPU).
func measureBenchReads(e *benchEnv, c *http.Client, tokens []string, d time.Duration) benchReadings {
	var (
		mu    sync.Mutex
		r     benchReadings
		wg    sync.WaitGroup
		n     = int(d.Seconds() * readRate)
		every = time.Second / readRate
		cpu0  = readBenchCPU()
		begin = time.Now()
	)
	for i := range n {
		sched := begin.Add(time.Duration(i) * every)
		time.Sleep(time.Until(sched))
		r.lag = max(r.lag, time.Since(sched))
		wg.Add(1)
		go func(token string) {
			defer wg.Done()
			start := time.Now()
			st, err := e.get(c, token)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || st != http.StatusOK {
				r.failed++
				return
			}
			r.latencies = append(r.latencies, took)
		}(tokens[i%len(tokens)])
	}
	wg.Wait()
	r.cpu = readBenchCPU().since(cpu0)
	return r
}

// benchCPU is how many cores this process and the whole machine kept busy over an interval.
type benchCPU struct{ self, machine float64 }

func (u benchCPU) String() string {
	return fmt.Sprintf("this process %.2f cores, whole machine %.2f cores", u.self, u.machine)
}

type benchCPUSample struct {
	at              time.Time
	selfTicks, busy float64 // clock ticks (USER_HZ)
	ok              bool
}

// readBenchCPU reads /proc/self/stat and /proc/stat; elsewhere it reports nothing.
func readBenchCPU() benchCPUSample {
	s := benchCPUSample{at: time.Now()}
	self, err1 := os.ReadFile("/proc/self/stat")
	all, err2 := os.ReadFile("/proc/stat")
	if err1 != nil || err2 != nil {
		return s
	}
	// Fields after the parenthesised command: utime and stime are the 12th and 13th.
	f := strings.Fields(string(self[bytes.LastIndexByte(self, ')')+1:]))
	line, _, _ := strings.Cut(string(all), "\n")
	g := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 13 || len(g) < 9 || g[0] != "cpu" {
		return s
	}
	num := func(v string) float64 { x, _ := strconv.ParseFloat(v, 64); return x }
	s.selfTicks = num(f[11]) + num(f[12])
	s.busy = num(g[1]) + num(g[2]) + num(g[3]) + num(g[6]) + num(g[7]) + num(g[8])
	s.ok = true
	return s
}

// since assumes USER_HZ = 100, as on every mainstream Linux.
func (s benchCPUSample) since(before benchCPUSample) benchCPU {
	sec := s.at.Sub(before.at).Seconds()
	if !s.ok || !before.ok || sec <= 0 {
		return benchCPU{}
	}
	return benchCPU{self: (s.selfTicks - before.selfTicks) / 100 / sec, machine: (s.busy - before.busy) / 100 / sec}
}

type benchFloodAnswer struct {
	status int // 0: transport error
	at     time.Time
	took   time.Duration
}

type benchFlood struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	answers []benchFloodAnswer
	client  *http.Client
}

// startBenchFlood starts floodClients goroutines that sign in to email with a new wrong password
// each time, as fast as they are answered, ignoring Retry-After, until ctx ends.
func startBenchFlood(ctx context.Context, e *benchEnv, email string) *benchFlood {
	f := &benchFlood{client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: floodClients}}}
	for g := range floodClients {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var mine []benchFloodAnswer
			defer func() {
				f.mu.Lock()
				f.answers = append(f.answers, mine...)
				f.mu.Unlock()
			}()
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf(`{"email":%q,"password":"Wrong-Passw0rd-%d-%d"}`, email, g, i)
				req, err := http.NewRequestWithContext(ctx, "POST", e.http.URL+"/api/auth/token", strings.NewReader(body))
				if err != nil {
					return
				}
				req.Header.Set("Content-Type", "application/json")
				start := time.Now()
				resp, err := f.client.Do(req)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					mine = append(mine, benchFloodAnswer{at: time.Now(), took: time.Since(start)})
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, benchFloodAnswer{status: resp.StatusCode, at: time.Now(), took: time.Since(start)})
			}
		}()
	}
	return f
}

// wait returns every answer once the flood has stopped.
func (f *benchFlood) wait() []benchFloodAnswer {
	f.wg.Wait()
	f.client.CloseIdleConnections()
	return f.answers
}

// benchPercentile is the nearest-rank p-quantile of ds (p=1 is the maximum); 0 for none.
func benchPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func describeBenchLimits(l web.RateLimits) string {
	if l == (web.RateLimits{}) {
		return "default (per address 60/min, per account 20/15min)"
	}
	return fmt.Sprintf("per address %d/%s, per account %d/%s", l.PerIP.N, l.PerIP.Window, l.PerAccount.N, l.PerAccount.Window)
}

// benchLoadAverage is the first three fields of /proc/loadavg, or "?" where there is none.
func benchLoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchBundle is a FHIR bundle of n laboratory results on n different days.
func benchBundle(n int) string {
	var sb strings.Builder
	sb.WriteString(`{"resourceType":"Bundle","type":"collection","entry":[`)
	day := time.Date(2020, 1, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"fullUrl":"urn:uuid:o%[1]d","resource":{"resourceType":"Observation","id":"o%[1]d","status":"final",
 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
 "code":{"coding":[{"system":"http://loinc.org","code":"2339-0","display":"Glucose"}],"text":"Glucose"},
 "effectiveDateTime":%[2]q,"valueQuantity":{"value":%[3]d.5,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}}`,
			i, day.AddDate(0, 0, i).Format(time.RFC3339), 70+i%60)
	}
	sb.WriteString("]}")
	return sb.String()
}

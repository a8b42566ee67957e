package web_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
	"github.com/vitalnexa/vitalnexa/internal/web"
)

// noAudit skips audit writes: the baseline the cost of the durable trail is measured against.
type noAudit struct{}

func (noAudit) WriteAuditEvent(context.Context, *phr.AuditEvent) error { return nil }

// BenchmarkAuditedReads: requests per second of GET /api/test-results from 32 concurrent
// clients for 5 s, with the durable audit trail (group commit, as serve runs it), with one
// transaction per audit row, and with audit writes skipped — in one run.
func BenchmarkAuditedReads(b *testing.B) {
	high := web.RateLimits{PerIP: web.RateLimit{N: 1 << 30, Window: time.Minute}, PerAccount: web.RateLimit{N: 1 << 30, Window: time.Minute}}
	for _, mode := range []struct {
		name  string
		trail func(*pgxpool.Pool) phr.AuditService
	}{
		{"audit=group_commit", nil},
		{"audit=row_per_transaction", func(p *pgxpool.Pool) phr.AuditService { return &postgres.AuditStore{Pool: p} }},
		{"audit=skipped", func(*pgxpool.Pool) phr.AuditService { return noAudit{} }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			e := mustBenchEnv(b, high, mode.trail)
			tokens := e.mustVerifiedUser("reader@example.com", 8)
			e.mustImport(tokens[0], benchBundle(benchResults))
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			const clients, length = 32, 5 * time.Second
			var n, failed atomic.Int64
			ctx, cancel := context.WithTimeout(context.Background(), length)
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						st, err := e.get(client, tokens[i%len(tokens)])
						if err != nil || st != http.StatusOK {
							if ctx.Err() == nil {
								failed.Add(1)
							}
							continue
						}
						n.Add(1)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start).Seconds()
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(n.Load())/elapsed, "req_per_s")
			b.ReportMetric(float64(failed.Load()), "failed")
		})
	}
}

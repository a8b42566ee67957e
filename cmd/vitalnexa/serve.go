package main

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/vitalnexa/vitalnexa/api"
	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/clamav"
	"github.com/vitalnexa/vitalnexa/internal/document"
	"github.com/vitalnexa/vitalnexa/internal/fhir"
	"github.com/vitalnexa/vitalnexa/internal/jobs"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/mail"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
	"github.com/vitalnexa/vitalnexa/internal/web"
)

func runServe(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	if err := cfg.checkServe(); err != nil {
		return err
	}
	if len(cfg.MigrateDatabaseURL) > 0 {
		if err := migrate(ctx, cfg, logger); err != nil {
			return err
		}
	}
	return serve(ctx, cfg, logger, nil)
}

// serve runs the API until ctx ends. ready, when not nil, receives the listening address.
func serve(ctx context.Context, cfg *Config, logger *slog.Logger, ready func(addr string)) error {
	wrapper, err := openMasterWrapper(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeWrapper(wrapper)
	pool, err := postgres.Open(ctx, string(cfg.DatabaseURL), cfg.DatabaseMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.CheckServerRole(ctx, pool); err != nil {
		return err
	}
	// Audit rows get their own connections: requests queueing for the main pool must not
	// keep the trail from being written.
	auditPool, err := postgres.Open(ctx, string(cfg.DatabaseURL), 4)
	if err != nil {
		return err
	}
	defer auditPool.Close()
	keys, err := postgres.LoadKeyring(ctx, pool, wrapper)
	if err != nil {
		return err
	}
	db := &postgres.DB{Pool: pool, Keys: keys, IdleTimeout: cfg.IdleTimeout, FileQuota: int64(cfg.FileQuotaMB) << 20}
	// Audit rows of concurrent requests are committed together; a response leaves only
	// once its row is durable.
	trail := audit.NewWriter(auditPool, logger)
	defer trail.Close()
	// The copy of the trail off the database, signed with a key derived from the
	// blind-index key for this purpose alone.
	copyBucket, err := openAuditCopy(ctx, cfg, true)
	if err != nil {
		return err
	}
	var copyKey []byte
	if copyBucket != nil {
		defer copyBucket.Close()
		copyKey = audit.SegmentKey(keys)
	}
	// Background jobs (re-encryption, scheduled key rotation, the audit rules, retention and
	// copy) run in every serve process; River hands each job to one of them.
	jobClient, err := jobs.NewClient(jobs.Options{DB: db, Wrapper: wrapper, Audit: trail,
		Logger: logger, RotateEvery: cfg.KeyRotationInterval, Workers: 2,
		Rules: &cfg.AuditRules, AlertWebhookURL: string(cfg.AlertWebhookURL), AuditRetentionYears: cfg.AuditRetentionYears,
		CopyBucket: copyBucket, CopyKey: copyKey})
	if err != nil {
		return err
	}
	// A read of a value under a revoked key has the re-encryption job run now (at most one
	// is queued at a time; asking again within 10 s is skipped).
	var lastAsked atomic.Int64
	db.OnRevokedRead = func() {
		now := time.Now().UnixNano()
		if last := lastAsked.Load(); now-last < int64(10*time.Second) || !lastAsked.CompareAndSwap(last, now) {
			return
		}
		go func() {
			if _, err := jobs.EnqueueReencrypt(context.WithoutCancel(ctx), jobClient); err != nil {
				logger.Error("re-encryption not queued", "job", "reencrypt", "err", err.Error())
			}
		}()
	}
	if err := jobClient.Start(ctx); err != nil {
		return err
	}
	defer jobClient.Stop(context.WithoutCancel(ctx))
	go maintainKeyring(ctx, db, wrapper, logger)
	peppers := map[int][]byte{cfg.PepperVersion: cfg.Pepper}
	for v, p := range cfg.OldPeppers {
		peppers[v] = p
	}
	hasher, err := auth.NewHasher(auth.HasherOptions{Peppers: peppers, CurrentPepper: cfg.PepperVersion})
	if err != nil {
		return err
	}
	tokens, err := auth.NewTokenIssuer(auth.TokenOptions{
		Secrets: map[string][]byte{"k1": cfg.JWTSecret}, CurrentKID: "k1",
		// The issuer is fixed, not the listen or public address, so that every serve process
		// of one deployment accepts the others' tokens.
		Issuer: "vitalnexa", Audience: "vitalnexa-api", TTL: cfg.AccessTokenTTL})
	if err != nil {
		return err
	}
	breach, err := auth.NewBreachChecker(auth.BreachOptions{BaseURL: cfg.BreachURL, OfflineFile: cfg.BreachFile,
		Disabled: cfg.BreachCheck == "offline"})
	if err != nil {
		return err
	}
	refreshKey, err := hkdf.Key(sha256.New, cfg.JWTSecret, nil, "vitalnexa refresh successor v1", 32)
	if err != nil {
		return err
	}
	var scan func(context.Context, []byte) error
	if cfg.ClamAVAddr != "" {
		scan = (&clamav.Scanner{Addr: cfg.ClamAVAddr}).Scan
	}
	srv, err := web.NewServer(web.Options{
		Logger: logger, Users: db, Accounts: db, Admin: db, Sessions: db, TestResults: db, HealthRecords: db, Imports: db,
		Files: db, Privacy: db, CheckDocument: document.Check, Scan: scan, MaxUploadBytes: int64(cfg.UploadLimitMB) << 20,
		RateLimiter: &postgres.RateLimiter{Pool: pool, Keys: keys},
		Limits: web.RateLimits{PerIP: web.RateLimit{N: cfg.RateLimitIP, Window: time.Minute},
			PerAccount: web.RateLimit{N: cfg.RateLimitAcct, Window: 15 * time.Minute}},
		Breach: breach, RefreshKey: refreshKey,
		ReceiptKey: keys.BlindIndex("erasure_receipt", []byte("vitalnexa erasure receipt key v1")),
		Audit:      trail,
		Mailer:     &mail.DirMailer{Dir: cfg.MailDir, From: cfg.MailFrom},
		Hasher:     hasher, Tokens: tokens, Passwords: auth.PasswordPolicy{NIST: cfg.PasswordPolicy == "nist"},
		ParseFHIR: func(b []byte) (*phr.ImportBatch, error) { return fhir.ParseBundle(b, fhir.Options{}) },
		Ready: func(r *http.Request) error {
			if err := pool.Ping(r.Context()); err != nil {
				return err
			}
			return auditPool.Ping(r.Context())
		},
		Spec: api.Spec, PublicURL: cfg.PublicURL, TrustedProxies: cfg.TrustedProxies,
	})
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// TLS 1.3 suites are fixed and all AEAD; for 1.2 only forward-secret AEAD suites.
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
		},
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "tls", cfg.TLSCert != "")
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- hs.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	srv.Close() // mail still on its way
	return nil
}

// maintainKeyring keeps this process's keyring in step with the database (a rotation,
// revocation or destruction made elsewhere takes effect within 10 seconds) and adds its
// encryptions to the stored counts, warning when a key nears its nonce budget.
func maintainKeyring(ctx context.Context, db *postgres.DB, w keyring.Wrapper, logger *slog.Logger) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	flush := func(ctx context.Context) {
		over, err := postgres.FlushEncryptionCounts(ctx, db.Pool, db.Keys)
		if err != nil && ctx.Err() == nil { // cut by shutdown: the final flush stores them
			logger.Error("encryption counts not stored", "err", err.Error())
		}
		for _, v := range over {
			logger.Warn("data key nears its nonce budget (2^32 encryptions): run `vitalnexa keys rotate`", "version", v)
		}
	}
	for {
		select {
		case <-ctx.Done():
			flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
		}
		if err := postgres.ReloadKeyring(ctx, db.Pool, w, db.Keys); err != nil && ctx.Err() == nil {
			logger.Error("keyring reload failed", "err", err.Error())
		}
		flush(ctx)
	}
}

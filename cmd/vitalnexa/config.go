package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
)

// secret is key material or a password: it never prints.
type secret []byte

func (secret) String() string               { return "[redacted]" }
func (secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (s secret) GoString() string           { return s.String() }
func (s secret) Format(f fmt.State, _ rune) { io.WriteString(f, "[redacted]") }

// Config is the whole configuration, read once from VITALNEXA_* variables (and
// DATABASE_URL) and validated before anything starts.
type Config struct {
	Addr       string // VITALNEXA_ADDR
	DataDir    string // VITALNEXA_DATA_DIR
	PublicURL  string // VITALNEXA_PUBLIC_URL
	MailDir    string // VITALNEXA_MAIL_DIR
	MailFrom   string // VITALNEXA_MAIL_FROM
	Production bool   // VITALNEXA_ENV=production

	DatabaseURL        secret // DATABASE_URL: serve → the vitalnexa_app role; dev → a superuser
	MigrateDatabaseURL secret // VITALNEXA_MIGRATE_DATABASE_URL: the vitalnexa_owner role
	DatabaseMaxConns   int32  // VITALNEXA_DATABASE_MAX_CONNS

	MasterKey secret // VITALNEXA_MASTER_KEY, base64 of 32 bytes
	// MasterKeyURL names the master key in a KMS instead (VITALNEXA_MASTER_KEY_URL, one of
	// keyring.KMSSchemes). It is a secret: a base64key:// URL is the key itself.
	MasterKeyURL secret
	// NewMasterKey and NewMasterKeyURL (VITALNEXA_NEW_MASTER_KEY, VITALNEXA_NEW_MASTER_KEY_URL)
	// are the master key that `keys rewrap-master` moves the data keys to.
	NewMasterKey    secret
	NewMasterKeyURL secret

	JWTSecret secret // VITALNEXA_JWT_SECRET, base64 of >= 32 bytes
	Pepper    secret // VITALNEXA_PASSWORD_PEPPER, base64 of >= 32 bytes
	// PepperVersion is the version of Pepper (VITALNEXA_PASSWORD_PEPPER_VERSION, default 1);
	// OldPeppers are earlier versions (VITALNEXA_PASSWORD_PEPPER_V<n>), kept so that old
	// hashes still verify and are re-hashed with the current pepper at the next sign-in.
	PepperVersion int
	OldPeppers    map[int]secret

	PasswordPolicy string // VITALNEXA_PASSWORD_POLICY: "plan" (default) or "nist"
	TrustedProxies []netip.Prefix
	TLSCert        string // VITALNEXA_TLS_CERT
	TLSKey         string // VITALNEXA_TLS_KEY
	AccessTokenTTL time.Duration
	IdleTimeout    time.Duration // VITALNEXA_SESSION_IDLE_TIMEOUT
	// KeyRotationInterval is the age at which the data key is rotated on schedule
	// (VITALNEXA_KEY_ROTATION_INTERVAL, default 2160h = 90 days; "off" turns it off).
	KeyRotationInterval time.Duration

	BreachCheck   string // VITALNEXA_BREACH_CHECK: "remote" (default: HIBP and offline) or "offline"
	BreachURL     string // VITALNEXA_HIBP_URL
	BreachFile    string // VITALNEXA_BREACHED_PASSWORDS_FILE
	ClamAVAddr    string // VITALNEXA_CLAMAV_ADDR: clamd ("host:port" or a socket path) to scan uploads; none by default
	UploadLimitMB int    // VITALNEXA_UPLOAD_LIMIT_MB: the largest document, default 20
	FileQuotaMB   int    // VITALNEXA_FILE_QUOTA_MB: each user's storage for documents, default 200
	RateLimitIP   int    // VITALNEXA_RATE_LIMIT_IP: auth requests per client address per minute
	RateLimitAcct int    // VITALNEXA_RATE_LIMIT_ACCOUNT: auth requests per account per 15 minutes

	// AuditRules are the thresholds of the rules that watch the trail (VITALNEXA_AUDIT_WINDOW,
	// _BULK_LIMIT, _ENUMERATION_LIMIT, _STUFFING_ACCOUNTS, _STUFFING_REQUESTS, _HOURS).
	AuditRules audit.Rules
	// AlertWebhookURL receives each alert as JSON (VITALNEXA_ALERT_WEBHOOK_URL); it may carry
	// a token, so it never prints.
	AlertWebhookURL secret
	// AuditRetentionYears is how long audit rows are kept (VITALNEXA_AUDIT_RETENTION, default
	// and minimum 6 years).
	AuditRetentionYears int
	// AuditCopyURL is the blob store the trail is copied to (VITALNEXA_AUDIT_COPY_URL, default
	// file://$VITALNEXA_DATA_DIR/audit-copies; "off" turns the copy off). AuditCopyDefault
	// says it is the default.
	AuditCopyURL     string
	AuditCopyDefault bool
}

func loadConfig(getenv func(string) string) (*Config, error) {
	env := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	c := &Config{
		Addr:           env("VITALNEXA_ADDR", "127.0.0.1:8080"),
		DataDir:        env("VITALNEXA_DATA_DIR", "var"),
		MailFrom:       env("VITALNEXA_MAIL_FROM", "VitalNexa <no-reply@vitalnexa.invalid>"),
		Production:     env("VITALNEXA_ENV", "development") == "production",
		PasswordPolicy: env("VITALNEXA_PASSWORD_POLICY", "plan"),
		TLSCert:        env("VITALNEXA_TLS_CERT", ""),
		TLSKey:         env("VITALNEXA_TLS_KEY", ""),
		AccessTokenTTL: 15 * time.Minute,
		BreachCheck:    env("VITALNEXA_BREACH_CHECK", "remote"),
		BreachURL:      env("VITALNEXA_HIBP_URL", "https://api.pwnedpasswords.com"),
		BreachFile:     env("VITALNEXA_BREACHED_PASSWORDS_FILE", ""),
	}
	var err error
	if c.IdleTimeout, err = time.ParseDuration(env("VITALNEXA_SESSION_IDLE_TIMEOUT", "15m")); err != nil ||
		c.IdleTimeout < time.Minute || c.IdleTimeout > 24*time.Hour {
		return nil, fmt.Errorf("VITALNEXA_SESSION_IDLE_TIMEOUT must be a duration from 1m to 24h, such as 15m")
	}
	switch v := env("VITALNEXA_KEY_ROTATION_INTERVAL", "2160h"); v {
	case "off":
	default:
		if c.KeyRotationInterval, err = time.ParseDuration(v); err != nil || c.KeyRotationInterval < time.Hour {
			return nil, fmt.Errorf("VITALNEXA_KEY_ROTATION_INTERVAL must be a duration of at least 1h (such as 2160h) or \"off\"")
		}
	}
	switch c.BreachCheck {
	case "remote", "offline":
	default:
		return nil, fmt.Errorf("VITALNEXA_BREACH_CHECK must be \"remote\" or \"offline\"")
	}
	c.UploadLimitMB, c.FileQuotaMB = 20, 200
	c.ClamAVAddr = env("VITALNEXA_CLAMAV_ADDR", "")
	for name, dst := range map[string]*int{"VITALNEXA_RATE_LIMIT_IP": &c.RateLimitIP, "VITALNEXA_RATE_LIMIT_ACCOUNT": &c.RateLimitAcct,
		"VITALNEXA_UPLOAD_LIMIT_MB": &c.UploadLimitMB, "VITALNEXA_FILE_QUOTA_MB": &c.FileQuotaMB} {
		if v := env(name, ""); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000000 {
				return nil, fmt.Errorf("%s must be a number from 1 to 1000000", name)
			}
			*dst = n
		}
	}
	if err := c.loadAudit(env); err != nil {
		return nil, err
	}
	c.MailDir = env("VITALNEXA_MAIL_DIR", strings.TrimRight(c.DataDir, "/")+"/mail")
	c.PublicURL = strings.TrimRight(env("VITALNEXA_PUBLIC_URL", "http://"+c.Addr), "/")
	c.DatabaseURL = secret(env("DATABASE_URL", env("VITALNEXA_DATABASE_URL", "")))
	c.MigrateDatabaseURL = secret(env("VITALNEXA_MIGRATE_DATABASE_URL", ""))
	if v := env("VITALNEXA_DATABASE_MAX_CONNS", ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("VITALNEXA_DATABASE_MAX_CONNS must be a number from 1 to 1000")
		}
		c.DatabaseMaxConns = int32(n)
	}
	if c.MasterKey, err = base64Secret(getenv, "VITALNEXA_MASTER_KEY", 32, 32); err != nil {
		return nil, err
	}
	if c.NewMasterKey, err = base64Secret(getenv, "VITALNEXA_NEW_MASTER_KEY", 32, 32); err != nil {
		return nil, err
	}
	if c.MasterKeyURL, err = kmsURL(getenv, "VITALNEXA_MASTER_KEY_URL"); err != nil {
		return nil, err
	}
	if c.NewMasterKeyURL, err = kmsURL(getenv, "VITALNEXA_NEW_MASTER_KEY_URL"); err != nil {
		return nil, err
	}
	if c.JWTSecret, err = base64Secret(getenv, "VITALNEXA_JWT_SECRET", 32, 512); err != nil {
		return nil, err
	}
	if c.Pepper, err = base64Secret(getenv, "VITALNEXA_PASSWORD_PEPPER", 32, 512); err != nil {
		return nil, err
	}
	c.PepperVersion = 1
	if v := env("VITALNEXA_PASSWORD_PEPPER_VERSION", ""); v != "" {
		if c.PepperVersion, err = strconv.Atoi(v); err != nil || c.PepperVersion < 1 || c.PepperVersion > 9999 {
			return nil, fmt.Errorf("VITALNEXA_PASSWORD_PEPPER_VERSION must be a number from 1 to 9999")
		}
	}
	c.OldPeppers = map[int]secret{}
	for v := 1; v < c.PepperVersion; v++ {
		name := "VITALNEXA_PASSWORD_PEPPER_V" + strconv.Itoa(v)
		old, err := base64Secret(getenv, name, 32, 512)
		if err != nil {
			return nil, err
		}
		if old != nil {
			c.OldPeppers[v] = old
		}
	}
	switch c.PasswordPolicy {
	case "plan", "nist":
	default:
		return nil, fmt.Errorf("VITALNEXA_PASSWORD_POLICY must be \"plan\" or \"nist\"")
	}
	for _, p := range strings.Split(env("VITALNEXA_TRUSTED_PROXIES", ""), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return nil, fmt.Errorf("VITALNEXA_TRUSTED_PROXIES: %q is not an address or CIDR prefix", p)
			}
			prefix = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, prefix.Masked())
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, fmt.Errorf("set both VITALNEXA_TLS_CERT and VITALNEXA_TLS_KEY, or neither")
	}
	if c.Production {
		if err := c.checkProductionSecrets(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// kmsURL reads an optional KMS URL and checks its scheme. Errors never echo it: it can
// hold a key (base64key://) or a token.
func kmsURL(getenv func(string) string, name string) (secret, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return nil, nil
	}
	if err := keyring.CheckKMSURL(v); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return secret(v), nil
}

// base64Secret reads an optional base64 secret of min..max bytes. Errors never echo it.
func base64Secret(getenv func(string) string, name string, min, max int) (secret, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return nil, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil {
			if len(b) < min || len(b) > max {
				return nil, fmt.Errorf("%s must decode to %d..%d bytes (it decodes to %d)", name, min, max, len(b))
			}
			return secret(b), nil
		}
	}
	return nil, fmt.Errorf("%s is not valid base64", name)
}

// checkServe refuses to serve without the secrets, or in plain HTTP off loopback unless a
// trusted TLS-terminating proxy is configured.
func (c *Config) checkServe() error {
	var missing []string
	if len(c.DatabaseURL) == 0 {
		missing = append(missing, "DATABASE_URL")
	}
	if c.MasterKey == nil && len(c.MasterKeyURL) == 0 {
		missing = append(missing, "VITALNEXA_MASTER_KEY (or VITALNEXA_MASTER_KEY_URL)")
	}
	if c.JWTSecret == nil {
		missing = append(missing, "VITALNEXA_JWT_SECRET")
	}
	if c.Pepper == nil {
		missing = append(missing, "VITALNEXA_PASSWORD_PEPPER")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing configuration: %s (see README)", strings.Join(missing, ", "))
	}
	if c.TLSCert == "" && len(c.TrustedProxies) == 0 {
		host, _, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return fmt.Errorf("VITALNEXA_ADDR: %v", err)
		}
		if ip, err := netip.ParseAddr(host); (err != nil && host != "localhost") || (err == nil && !ip.IsLoopback()) {
			return fmt.Errorf("plain HTTP is only served on loopback: set VITALNEXA_TLS_CERT/KEY, or VITALNEXA_TRUSTED_PROXIES for a TLS-terminating proxy")
		}
	}
	return nil
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// loadAudit reads the audit trail's configuration: the rules, the retention (never below
// six years) and the copy off the database.
func (c *Config) loadAudit(env func(name, def string) string) error {
	c.AuditRules = audit.DefaultRules()
	var err error
	if c.AuditRules.Window, err = time.ParseDuration(env("VITALNEXA_AUDIT_WINDOW", "10m")); err != nil ||
		c.AuditRules.Window < time.Minute || c.AuditRules.Window > 24*time.Hour || (24*time.Hour)%c.AuditRules.Window != 0 {
		return fmt.Errorf("VITALNEXA_AUDIT_WINDOW must be a duration from 1m to 24h that divides a day, such as 10m")
	}
	for name, dst := range map[string]*int{"VITALNEXA_AUDIT_BULK_LIMIT": &c.AuditRules.BulkRecords,
		"VITALNEXA_AUDIT_ENUMERATION_LIMIT": &c.AuditRules.Enumeration, "VITALNEXA_AUDIT_STUFFING_ACCOUNTS": &c.AuditRules.StuffingAccounts,
		"VITALNEXA_AUDIT_STUFFING_REQUESTS": &c.AuditRules.StuffingRequests} {
		if v := env(name, ""); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000000 {
				return fmt.Errorf("%s must be a number from 1 to 1000000", name)
			}
			*dst = n
		}
	}
	if v := env("VITALNEXA_AUDIT_HOURS", "off"); v != "off" {
		if c.AuditRules.Hours, err = audit.ParseHours(v); err != nil {
			return fmt.Errorf("VITALNEXA_AUDIT_HOURS must be \"off\" or HH:MM-HH:MM (UTC), such as 06:00-22:00")
		}
	}
	if v := env("VITALNEXA_ALERT_WEBHOOK_URL", ""); v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("VITALNEXA_ALERT_WEBHOOK_URL must be an http(s) URL")
		}
		c.AlertWebhookURL = secret(v)
	}
	v := strings.TrimSuffix(env("VITALNEXA_AUDIT_RETENTION", "6y"), "y")
	if c.AuditRetentionYears, err = strconv.Atoi(v); err != nil || c.AuditRetentionYears < 6 || c.AuditRetentionYears > 100 {
		return fmt.Errorf("VITALNEXA_AUDIT_RETENTION must be a number of years from 6 to 100, such as 6y: audit rows are kept at least six years")
	}
	switch v := env("VITALNEXA_AUDIT_COPY_URL", ""); v {
	case "off":
	case "":
		dir, err := filepath.Abs(filepath.Join(c.DataDir, "audit-copies"))
		if err != nil {
			return err
		}
		c.AuditCopyURL, c.AuditCopyDefault = (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir)}).String(), true
	default:
		if _, err := url.Parse(v); err != nil {
			return fmt.Errorf("VITALNEXA_AUDIT_COPY_URL is not a URL")
		}
		c.AuditCopyURL = v
	}
	return nil
}

// auditCopyDir is the directory of the default copy, "" when the copy is configured.
func (c *Config) auditCopyDir() string {
	if !c.AuditCopyDefault {
		return ""
	}
	u, err := url.Parse(c.AuditCopyURL)
	if err != nil {
		return ""
	}
	return filepath.FromSlash(u.Path)
}

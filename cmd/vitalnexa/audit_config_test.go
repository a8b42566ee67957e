package main

import (
	"strings"
	"testing"
	"time"
)

func TestAuditConfiguration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		{name: "defaults", check: func(t *testing.T, c *Config) {
			if c.AuditRetentionYears != 6 || c.AuditRules.BulkRecords != 100 || c.AuditRules.Window != 10*time.Minute ||
				c.AuditRules.Hours != nil || !c.AuditCopyDefault || !strings.HasPrefix(c.AuditCopyURL, "file:///") ||
				!strings.HasSuffix(c.AuditCopyURL, "/audit-copies") {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{name: "seven years", env: map[string]string{"VITALNEXA_AUDIT_RETENTION": "7y"}, check: func(t *testing.T, c *Config) {
			if c.AuditRetentionYears != 7 {
				t.Fatalf("retention %d", c.AuditRetentionYears)
			}
		}},
		// Attack: shortening the trail's life below HIPAA's six years by configuration.
		{name: "five years refused", env: map[string]string{"VITALNEXA_AUDIT_RETENTION": "5y"}, wantErr: "VITALNEXA_AUDIT_RETENTION"},
		{name: "zero refused", env: map[string]string{"VITALNEXA_AUDIT_RETENTION": "0"}, wantErr: "VITALNEXA_AUDIT_RETENTION"},
		{name: "months refused", env: map[string]string{"VITALNEXA_AUDIT_RETENTION": "72m"}, wantErr: "VITALNEXA_AUDIT_RETENTION"},
		{name: "hours", env: map[string]string{"VITALNEXA_AUDIT_HOURS": "06:00-22:00", "VITALNEXA_AUDIT_BULK_LIMIT": "250"},
			check: func(t *testing.T, c *Config) {
				if c.AuditRules.Hours == nil || c.AuditRules.Hours.From != 6*time.Hour || c.AuditRules.BulkRecords != 250 {
					t.Fatalf("rules %+v", c.AuditRules)
				}
			}},
		{name: "bad hours", env: map[string]string{"VITALNEXA_AUDIT_HOURS": "6-22"}, wantErr: "VITALNEXA_AUDIT_HOURS"},
		{name: "bad window", env: map[string]string{"VITALNEXA_AUDIT_WINDOW": "7m"}, wantErr: "VITALNEXA_AUDIT_WINDOW"},
		{name: "webhook not http", env: map[string]string{"VITALNEXA_ALERT_WEBHOOK_URL": "ftp://x"}, wantErr: "VITALNEXA_ALERT_WEBHOOK_URL"},
		{name: "copy off", env: map[string]string{"VITALNEXA_AUDIT_COPY_URL": "off"}, check: func(t *testing.T, c *Config) {
			if c.AuditCopyURL != "" {
				t.Fatalf("copy %q", c.AuditCopyURL)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

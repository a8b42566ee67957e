package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

func randomKey(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func base64KeyURL(t *testing.T) string {
	t.Helper()
	return "base64key://" + base64.URLEncoding.EncodeToString(randomKey(t))
}

// mustConfig loads a configuration from env alone.
func mustConfig(t *testing.T, env map[string]string) *Config {
	t.Helper()
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	return cfg
}

func TestOpenMasterWrapper(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	devKey := randomKey(t)
	if err := os.WriteFile(filepath.Join(dataDir, "secrets.env"), []byte("# dev\nVITALNEXA_MASTER_KEY="+b64(devKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := []byte("this is my very own master key!!")
	hexText := []byte(hex.EncodeToString(randomKey(t))[:32])
	seq := make([]byte, 32)
	for i := range seq {
		seq[i] = byte(i)
	}
	few := make([]byte, 32) // random over 12 values only
	for i, c := range randomKey(t) {
		few[i] = c % 12
	}
	tests := []struct {
		name       string
		production bool
		env        map[string]string
		wantErr    string // "" = opens
		wantWarn   bool
	}{
		{"development, local key", false, map[string]string{"VITALNEXA_MASTER_KEY": b64(randomKey(t))}, "", false},
		{"development, base64key URL", false, map[string]string{"VITALNEXA_MASTER_KEY_URL": base64KeyURL(t)}, "", false},
		{"development, missing", false, nil, "set VITALNEXA_MASTER_KEY", false},
		// Which key wraps the data keys would be a guess.
		{"development, both", false, map[string]string{"VITALNEXA_MASTER_KEY": b64(randomKey(t)), "VITALNEXA_MASTER_KEY_URL": base64KeyURL(t)}, "both", false},
		{"production, both", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(randomKey(t)), "VITALNEXA_MASTER_KEY_URL": base64KeyURL(t)}, "both", false},
		{"production, missing", true, nil, "set VITALNEXA_MASTER_KEY", false},
		// A key kept in the environment works, with a warning to move it to a KMS.
		{"production, random local key", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(randomKey(t))}, "", true},
		// base64key:// is the key in the URL: for tests only.
		{"production, base64key URL", true, map[string]string{"VITALNEXA_MASTER_KEY_URL": base64KeyURL(t)}, "base64key", false},
		{"production, all zero", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(make([]byte, 32))}, "VITALNEXA_MASTER_KEY", false},
		{"production, repeated byte", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(bytes.Repeat([]byte{0x5a}, 32))}, "pattern", false},
		{"production, repeated block", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(bytes.Repeat(randomKey(t)[:8], 4))}, "pattern", false},
		{"production, run of bytes", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(seq)}, "run of bytes", false},
		{"production, few distinct bytes", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(few)}, "distinct", false},
		{"production, text", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(text)}, "text", false},
		{"production, hex text", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(hexText)}, "VITALNEXA_MASTER_KEY", false},
		{"production, placeholder word", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(append([]byte("CHANGEME"), randomKey(t)[:24]...))}, "placeholder", false},
		{"production, published example", true, map[string]string{"VITALNEXA_MASTER_KEY": "smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4="}, "example", false},
		// Attack on the deployment: var/secrets.env copied into production.
		{"production, the dev instance's key", true, map[string]string{"VITALNEXA_MASTER_KEY": b64(devKey)}, "vitalnexa dev", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"VITALNEXA_DATA_DIR": dataDir}
			for k, v := range tc.env {
				env[k] = v
			}
			if tc.production {
				env["VITALNEXA_ENV"] = "production"
			}
			cfg := mustConfig(t, env)
			var logs bytes.Buffer
			w, err := openMasterWrapper(context.Background(), cfg, newLogger(&logs))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("openMasterWrapper: %v", err)
				}
				defer closeWrapper(w)
				wrapped, err := w.Wrap(context.Background(), []byte("data key"), []byte("aad"))
				if err != nil {
					t.Fatal(err)
				}
				if got, err := w.Unwrap(context.Background(), wrapped, []byte("aad")); err != nil || string(got) != "data key" {
					t.Fatalf("round trip: %q %v", got, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("openMasterWrapper: %v, want an error containing %q", err, tc.wantErr)
			}
			if got := strings.Contains(logs.String(), `"level":"WARN"`) && strings.Contains(logs.String(), "KMS"); got != tc.wantWarn {
				t.Fatalf("warned: %v, want %v (log %q)", got, tc.wantWarn, logs.String())
			}
			for _, v := range tc.env {
				key := strings.TrimPrefix(v, "base64key://")
				if err != nil && strings.Contains(err.Error(), key) || strings.Contains(logs.String(), key) {
					t.Fatalf("the key shows in the error or the log: %v %s", err, logs.String())
				}
			}
		})
	}
}

func TestOpenNewMasterWrapper(t *testing.T) {
	t.Parallel()
	key := b64(randomKey(t))
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"local", map[string]string{"VITALNEXA_MASTER_KEY": key, "VITALNEXA_NEW_MASTER_KEY": b64(randomKey(t))}, ""},
		{"KMS", map[string]string{"VITALNEXA_MASTER_KEY": key, "VITALNEXA_NEW_MASTER_KEY_URL": base64KeyURL(t)}, ""},
		{"missing", map[string]string{"VITALNEXA_MASTER_KEY": key}, "set VITALNEXA_NEW_MASTER_KEY"},
		{"the current one", map[string]string{"VITALNEXA_MASTER_KEY": key, "VITALNEXA_NEW_MASTER_KEY": key}, "is the current master key"},
		{"both", map[string]string{"VITALNEXA_NEW_MASTER_KEY": b64(randomKey(t)), "VITALNEXA_NEW_MASTER_KEY_URL": base64KeyURL(t)}, "both"},
		{"example in production", map[string]string{"VITALNEXA_ENV": "production", "VITALNEXA_NEW_MASTER_KEY": b64(make([]byte, 32))}, "VITALNEXA_NEW_MASTER_KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["VITALNEXA_DATA_DIR"] = t.TempDir()
			w, err := openNewMasterWrapper(context.Background(), mustConfig(t, tc.env), newLogger(io.Discard))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				closeWrapper(w)
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("openNewMasterWrapper: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfigMasterKeyURLAndProductionSecrets(t *testing.T) {
	t.Parallel()
	random := b64(randomKey(t))
	key := base64.URLEncoding.EncodeToString(randomKey(t))
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		leak    string // must not appear in the error
	}{
		{"KMS URL", map[string]string{"VITALNEXA_MASTER_KEY_URL": "awskms://alias/vitalnexa?region=eu-west-1"}, "", ""},
		{"new KMS URL", map[string]string{"VITALNEXA_NEW_MASTER_KEY_URL": "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k"}, "", ""},
		{"unknown scheme", map[string]string{"VITALNEXA_MASTER_KEY_URL": "vault://token-s3cr3t@vault/k"}, "VITALNEXA_MASTER_KEY_URL", "s3cr3t"},
		{"a key, not a URL", map[string]string{"VITALNEXA_MASTER_KEY_URL": key}, "VITALNEXA_MASTER_KEY_URL", key},
		// base64key:// alone is a fresh random key at every start: the data keys would be lost.
		{"base64key without a key", map[string]string{"VITALNEXA_MASTER_KEY_URL": "base64key://"}, "VITALNEXA_MASTER_KEY_URL", ""},
		{"bad new URL", map[string]string{"VITALNEXA_NEW_MASTER_KEY_URL": "http://" + key}, "VITALNEXA_NEW_MASTER_KEY_URL", key},
		{"short new key", map[string]string{"VITALNEXA_NEW_MASTER_KEY": b64(randomKey(t)[:16])}, "VITALNEXA_NEW_MASTER_KEY", ""},
		{"production, random secrets", map[string]string{"VITALNEXA_ENV": "production", "VITALNEXA_JWT_SECRET": random, "VITALNEXA_PASSWORD_PEPPER": b64(randomKey(t))}, "", ""},
		{"production, hex secrets", map[string]string{"VITALNEXA_ENV": "production", "VITALNEXA_JWT_SECRET": b64([]byte(hex.EncodeToString(randomKey(t))))}, "", ""},
		{"development, example JWT secret", map[string]string{"VITALNEXA_JWT_SECRET": b64([]byte("my-jwt-secret-for-the-vitalnexa-api"))}, "", ""},
		{"production, example JWT secret", map[string]string{"VITALNEXA_ENV": "production", "VITALNEXA_JWT_SECRET": b64([]byte("my-jwt-secret-for-the-vitalnexa-api"))}, "VITALNEXA_JWT_SECRET", ""},
		{"production, repeated pepper", map[string]string{"VITALNEXA_ENV": "production", "VITALNEXA_PASSWORD_PEPPER": b64([]byte(strings.Repeat("pepper", 8)))}, "VITALNEXA_PASSWORD_PEPPER", ""},
		{"production, zero old pepper", map[string]string{"VITALNEXA_ENV": "production", "VITALNEXA_PASSWORD_PEPPER": random,
			"VITALNEXA_PASSWORD_PEPPER_VERSION": "2", "VITALNEXA_PASSWORD_PEPPER_V1": b64(make([]byte, 32))}, "VITALNEXA_PASSWORD_PEPPER_V1", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(func(k string) string { return tc.env[k] })
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("loadConfig: %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.leak != "" && strings.Contains(err.Error(), tc.leak) {
				t.Fatalf("the error quotes the value: %v", err)
			}
		})
	}
	t.Run("serve accepts a KMS URL for the master key", func(t *testing.T) {
		cfg := mustConfig(t, map[string]string{"DATABASE_URL": "postgres://x", "VITALNEXA_MASTER_KEY_URL": base64KeyURL(t),
			"VITALNEXA_JWT_SECRET": random, "VITALNEXA_PASSWORD_PEPPER": random})
		if err := cfg.checkServe(); err != nil {
			t.Fatal(err)
		}
		cfg.MasterKeyURL = nil
		if err := cfg.checkServe(); err == nil || !strings.Contains(err.Error(), "VITALNEXA_MASTER_KEY") {
			t.Fatalf("checkServe without a master key: %v", err)
		}
	})
	t.Run("the URL never prints", func(t *testing.T) {
		url := base64KeyURL(t)
		cfg := mustConfig(t, map[string]string{"VITALNEXA_MASTER_KEY_URL": url})
		var logs bytes.Buffer
		newLogger(&logs).Info("config", "url", cfg.MasterKeyURL)
		w, err := openMasterWrapper(context.Background(), cfg, newLogger(&logs))
		if err != nil {
			t.Fatal(err)
		}
		defer closeWrapper(w)
		key := strings.TrimPrefix(url, "base64key://")
		for _, s := range []string{logs.String(), sprintAll(cfg), sprintAll(w)} {
			if strings.Contains(s, key) {
				t.Fatalf("the key shows: %s", s)
			}
		}
	})
}

// TestMasterKeyURLEndToEnd moves a database's keys to a base64key:// master key and then
// runs the commands with VITALNEXA_MASTER_KEY_URL alone.
func TestMasterKeyURLEndToEnd(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	url := base64KeyURL(t)
	env := map[string]string{"VITALNEXA_MASTER_KEY_URL": url, "VITALNEXA_DATA_DIR": t.TempDir()}
	cfg := mustConfig(t, env)
	kms, err := openMasterWrapper(context.Background(), cfg, newLogger(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	defer closeWrapper(kms)
	local, err := keyring.NewLocalWrapper(d.MasterKey)
	if err != nil {
		t.Fatal(err)
	}
	owner := pgtest.MustPool(t, d.OwnerURL, 2)
	if _, err := postgres.RewrapKeys(context.Background(), owner, local, kms); err != nil {
		t.Fatal(err)
	}
	runWith := func(extra map[string]string, args ...string) error {
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		for k, v := range extra {
			e[k] = v
		}
		return run(context.Background(), args, func(k string) string { return e[k] }, nil, io.Discard, io.Discard)
	}
	if err := runWith(map[string]string{"VITALNEXA_MIGRATE_DATABASE_URL": d.OwnerURL}, "migrate"); err != nil {
		t.Fatalf("migrate with the KMS master key: %v", err)
	}
	// create-admin loads the keyring before it looks the email up: "no account" means the
	// keys unwrapped.
	err = runWith(map[string]string{"DATABASE_URL": d.AppURL}, "users", "create-admin", "nobody@example.org")
	if err == nil || !strings.Contains(err.Error(), "no account has this email") {
		t.Fatalf("create-admin with the KMS master key: %v", err)
	}
	err = runWith(map[string]string{"DATABASE_URL": d.AppURL, "VITALNEXA_MASTER_KEY_URL": "", "VITALNEXA_MASTER_KEY": b64(d.MasterKey)},
		"users", "create-admin", "nobody@example.org")
	if err == nil || !strings.Contains(err.Error(), "does not unwrap") {
		t.Fatalf("create-admin with the old master key: %v", err)
	}
}

func sprintAll(v any) string {
	var b strings.Builder
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		b.WriteString(strings.TrimSpace(fmt.Sprintf(f, v)))
	}
	return b.String()
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/vitalnexa/vitalnexa/internal/keyring"
)

// masterKeySetting is one master key as configured: a local key or a KMS URL, and the
// names of the variables they came from (for messages).
type masterKeySetting struct {
	keyName, urlName string
	key, url         secret
}

func currentMasterKey(cfg *Config) masterKeySetting {
	return masterKeySetting{"VITALNEXA_MASTER_KEY", "VITALNEXA_MASTER_KEY_URL", cfg.MasterKey, cfg.MasterKeyURL}
}

func newMasterKey(cfg *Config) masterKeySetting {
	return masterKeySetting{"VITALNEXA_NEW_MASTER_KEY", "VITALNEXA_NEW_MASTER_KEY_URL", cfg.NewMasterKey, cfg.NewMasterKeyURL}
}

// openMasterWrapper returns the wrapper of the master key that wraps the data keys: the
// KMS key named by VITALNEXA_MASTER_KEY_URL, or the local VITALNEXA_MASTER_KEY. Setting
// both is refused (which one wraps the keys would be a guess). In production it refuses
// an example or development key and a base64key:// URL, and warns when the key sits in
// the environment rather than in a KMS. Close the wrapper with closeWrapper.
func openMasterWrapper(ctx context.Context, cfg *Config, logger *slog.Logger) (keyring.Wrapper, error) {
	return openWrapper(ctx, cfg, logger, currentMasterKey(cfg))
}

// openNewMasterWrapper is openMasterWrapper for the master key that `keys rewrap-master`
// moves the data keys to (VITALNEXA_NEW_MASTER_KEY or VITALNEXA_NEW_MASTER_KEY_URL). It
// refuses a new local key equal to the current one.
func openNewMasterWrapper(ctx context.Context, cfg *Config, logger *slog.Logger) (keyring.Wrapper, error) {
	if cfg.NewMasterKey != nil && cfg.MasterKey != nil && bytes.Equal(cfg.NewMasterKey, cfg.MasterKey) {
		return nil, errors.New("VITALNEXA_NEW_MASTER_KEY is the current master key: generate a new one (openssl rand -base64 32)")
	}
	return openWrapper(ctx, cfg, logger, newMasterKey(cfg))
}

func openWrapper(ctx context.Context, cfg *Config, logger *slog.Logger, m masterKeySetting) (keyring.Wrapper, error) {
	switch {
	case m.key != nil && len(m.url) > 0:
		return nil, fmt.Errorf("both %s and %s are set: set only the one that holds the master key", m.keyName, m.urlName)
	case len(m.url) > 0:
		u, err := url.Parse(string(m.url))
		if err != nil {
			return nil, fmt.Errorf("%s is not a valid URL", m.urlName) // checked by loadConfig already
		}
		if cfg.Production && u.Scheme == "base64key" {
			return nil, fmt.Errorf("%s: base64key:// holds the key in the URL and is for tests; in production use a KMS (awskms, gcpkms, azurekeyvault, hashivault)", m.urlName)
		}
		w, err := keyring.OpenKMSWrapper(ctx, string(m.url))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.urlName, err)
		}
		return w, nil
	case m.key != nil:
		if cfg.Production {
			if err := checkSecret(m.keyName, m.key, true, cfg.DataDir); err != nil {
				return nil, err
			}
			logger.Warn("the master key comes from the environment, not a KMS: anyone who can read the process environment can unwrap the data keys; set "+m.urlName+" to a KMS key instead",
				"master_key_source", "env", "variable", m.keyName)
		}
		w, err := keyring.NewLocalWrapper(m.key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.keyName, err)
		}
		return w, nil
	default:
		return nil, fmt.Errorf("set %s (base64 of 32 random bytes) or %s (a KMS key): the data keys are wrapped by it", m.keyName, m.urlName)
	}
}

// closeWrapper releases a KMS client; a local wrapper holds nothing to release.
func closeWrapper(w keyring.Wrapper) {
	if c, ok := w.(io.Closer); ok {
		_ = c.Close()
	}
}

// checkProductionSecrets refuses example or development JWT secrets and peppers (their
// length is checked when they are read).
func (c *Config) checkProductionSecrets() error {
	if err := checkSecret("VITALNEXA_JWT_SECRET", c.JWTSecret, false, c.DataDir); err != nil {
		return err
	}
	if err := checkSecret("VITALNEXA_PASSWORD_PEPPER", c.Pepper, false, c.DataDir); err != nil {
		return err
	}
	for v, p := range c.OldPeppers {
		if err := checkSecret(fmt.Sprintf("VITALNEXA_PASSWORD_PEPPER_V%d", v), p, false, c.DataDir); err != nil {
			return err
		}
	}
	return nil
}

// exampleKeys are keys published as examples, which someone will paste into a
// configuration sooner or later.
var exampleKeys = []string{
	"smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4=", // gocloud.dev/secrets/localsecrets documentation
}

// placeholderWords betray a typed-in secret. Random bytes hold one of them (any case) with
// a probability below 1e-6 even at 512 bytes.
var placeholderWords = []string{"changeme", "change-me", "change_me", "change me", "example", "secret",
	"password", "passwd", "placeholder", "replace", "default", "dummy", "sample", "insecure", "test",
	"development", "vitalnexa", "xxxxxx"}

// checkSecret refuses, in production, a secret that is not random bytes: a published
// example, the development instance's generated key, a repeated pattern, a run of bytes,
// too few distinct bytes or a placeholder word; and for the master key, which must be 32
// random bytes, also text. A random key fails none of these except with negligible
// probability. A nil secret passes (whether it is required is checked elsewhere). Errors
// name the variable and the reason, never the value.
func checkSecret(name string, b []byte, masterKey bool, dataDir string) error {
	if b == nil {
		return nil
	}
	refuse := func(why string) error {
		return fmt.Errorf("%s %s: production needs random bytes (openssl rand -base64 32)", name, why)
	}
	for _, ex := range exampleKeys {
		if k, err := keyring.ParseMasterKey(ex); err == nil && bytes.Equal(k, b) {
			return refuse("is a published example key")
		}
	}
	if dev := devSecret(dataDir, strings.TrimPrefix(name, "VITALNEXA_NEW_")); dev != nil && bytes.Equal(dev, b) {
		return refuse("is the development secret generated by `vitalnexa dev`")
	}
	if p := period(b); p > 0 {
		return refuse(fmt.Sprintf("repeats a %d-byte pattern", p))
	}
	if len(b) > 1 {
		step, run := b[1]-b[0], true
		for i := 2; i < len(b) && run; i++ {
			run = b[i]-b[i-1] == step
		}
		if run {
			return refuse("is a run of bytes")
		}
	}
	var seen [256]bool
	distinct := 0
	printable := true
	for _, c := range b {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
		printable = printable && c >= 0x20 && c < 0x7f
	}
	// 32 random bytes hold about 30 distinct values; fewer than 8 is a pattern. The master
	// key is held to 16: it is always 32 bytes and must never be hex or text.
	if distinct < 8 || (masterKey && distinct < 16) {
		return refuse(fmt.Sprintf("has only %d distinct bytes", distinct))
	}
	lower := bytes.ToLower(b)
	for _, w := range placeholderWords {
		if bytes.Contains(lower, []byte(w)) {
			return refuse("contains a placeholder word")
		}
	}
	// 32 random bytes are all printable with probability (95/256)^32, about 2e-14.
	if masterKey && printable {
		return refuse("is text, not 32 random bytes")
	}
	return nil
}

// period returns the length of the shortest block that b repeats (at least twice, the last
// copy possibly cut), or 0 when there is none.
func period(b []byte) int {
	for p := 1; p <= len(b)/2; p++ {
		if bytes.Equal(b[p:], b[:len(b)-p]) {
			return p
		}
	}
	return 0
}

// devSecret returns the value that `vitalnexa dev` generated for name in dataDir's
// secrets.env, or nil. It only reads the file (loadDevSecrets would create it).
func devSecret(dataDir, name string) []byte {
	f, err := os.Open(filepath.Join(dataDir, "secrets.env"))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && k == name {
			s, err := base64Secret(func(string) string { return v }, name, 1, 4096)
			if err != nil {
				return nil
			}
			return s
		}
	}
	return nil
}

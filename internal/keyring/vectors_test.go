package keyring

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// sharedVectors is the shared Wycheproof folder; tests using it skip when it is absent.
var sharedVectors = filepath.Join("..", "..", "..", "shared", "testdata", "vectors")

// hexBytes is a JSON hex string.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

func MustReadJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read test vectors: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("parse %s: %v", path, err)
	}
}

// MustSharedVectors returns the path of a shared vector file or skips the test.
func MustSharedVectors(tb testing.TB, name string) string {
	tb.Helper()
	path := filepath.Join(sharedVectors, name)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		tb.Skipf("shared test vectors not present (%s); skipping", path)
	} else if err != nil {
		tb.Fatalf("stat %s: %v", path, err)
	}
	return path
}

// TestHKDFRFC5869 checks crypto/hkdf, which derives every field and blind-index key,
// against RFC 5869 Appendix A.1–A.3 (SHA-256), both the extract (PRK) and expand (OKM) steps.
func TestHKDFRFC5869(t *testing.T) {
	t.Parallel()
	var file struct {
		Cases []struct {
			Name            string
			IKM, Salt, Info hexBytes
			Length          int
			PRK, OKM        hexBytes
		}
	}
	MustReadJSON(t, filepath.Join("testdata", "rfc5869.json"), &file)
	if got, want := len(file.Cases), 3; got != want {
		t.Fatalf("%d cases, want %d", got, want)
	}
	for _, tc := range file.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			prk, err := hkdf.Extract(sha256.New, tc.IKM, tc.Salt)
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if !bytes.Equal(prk, tc.PRK) {
				t.Fatalf("PRK = %x, want %x", prk, []byte(tc.PRK))
			}
			okm, err := hkdf.Expand(sha256.New, prk, string(tc.Info), tc.Length)
			if err != nil {
				t.Fatalf("Expand: %v", err)
			}
			if !bytes.Equal(okm, tc.OKM) {
				t.Fatalf("Expand OKM = %x, want %x", okm, []byte(tc.OKM))
			}
			okm, err = hkdf.Key(sha256.New, tc.IKM, tc.Salt, string(tc.Info), tc.Length)
			if err != nil {
				t.Fatalf("Key: %v", err)
			}
			if !bytes.Equal(okm, tc.OKM) {
				t.Fatalf("Key OKM = %x, want %x", okm, []byte(tc.OKM))
			}
		})
	}
}

func TestHKDFWycheproof(t *testing.T) {
	t.Parallel()
	path := MustSharedVectors(t, "hkdf_sha256_test.json")
	var file struct {
		TestGroups []struct {
			Tests []struct {
				TcID            int
				Comment         string
				IKM, Salt, Info hexBytes
				Size            int
				OKM             hexBytes
				Result          string
			}
		}
	}
	MustReadJSON(t, path, &file)
	var valid, invalid int
	for _, g := range file.TestGroups {
		for _, tc := range g.Tests {
			t.Run(fmt.Sprintf("tcId %d %s", tc.TcID, tc.Comment), func(t *testing.T) {
				okm, err := hkdf.Key(sha256.New, tc.IKM, tc.Salt, string(tc.Info), tc.Size)
				switch tc.Result {
				case "valid":
					if err != nil {
						t.Fatalf("Key: %v", err)
					}
					if !bytes.Equal(okm, tc.OKM) {
						t.Fatalf("OKM = %x, want %x", okm, []byte(tc.OKM))
					}
				case "invalid":
					// Output beyond 255*32 bytes must be refused, not silently produced.
					if err == nil {
						t.Fatalf("Key accepted size %d and returned %d bytes", tc.Size, len(okm))
					}
				default:
					t.Fatalf("unknown result %q", tc.Result)
				}
			})
			if tc.Result == "valid" {
				valid++
			} else {
				invalid++
			}
		}
	}
	if valid == 0 || invalid == 0 {
		t.Fatalf("ran %d valid and %d invalid vectors; the file layout changed", valid, invalid)
	}
}

// TestAESGCMWycheproof runs the AES-256, 96-bit-IV Wycheproof vectors through newAEAD,
// sealParts and openParts — the construction Encrypt, Decrypt and the local Wrapper use.
func TestAESGCMWycheproof(t *testing.T) {
	t.Parallel()
	path := MustSharedVectors(t, "aes_gcm_test.json")
	var file struct {
		TestGroups []struct {
			KeySize, IvSize, TagSize int
			Tests                    []struct {
				TcID                       int
				Comment                    string
				Flags                      []string
				Key, IV, AAD, Msg, CT, Tag hexBytes
				Result                     string
			}
		}
	}
	MustReadJSON(t, path, &file)
	var valid, invalid, otherIV int
	for _, g := range file.TestGroups {
		if g.KeySize != 256 || g.TagSize != 128 {
			continue
		}
		for _, tc := range g.Tests {
			name := fmt.Sprintf("tcId %d iv%d %s", tc.TcID, g.IvSize, tc.Comment)
			if g.IvSize != 96 {
				otherIV++
				t.Run(name, func(t *testing.T) {
					// The stored format has 12-byte nonces only; any other size (including
					// the zero-length IV attack) must be refused before reaching GCM.
					aead, err := newAEAD(tc.Key)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := openParts(aead, tc.IV, tc.CT, tc.Tag, tc.AAD); !errors.Is(err, ErrDecrypt) {
						t.Fatalf("openParts with a %d-bit IV: %v, want ErrDecrypt", g.IvSize, err)
					}
				})
				continue
			}
			t.Run(name, func(t *testing.T) {
				aead, err := newAEAD(tc.Key)
				if err != nil {
					t.Fatalf("newAEAD: %v", err)
				}
				pt, openErr := openParts(aead, tc.IV, tc.CT, tc.Tag, tc.AAD)
				switch tc.Result {
				case "valid":
					ct, tag := sealParts(aead, tc.IV, tc.Msg, tc.AAD)
					if !bytes.Equal(ct, tc.CT) || !bytes.Equal(tag, tc.Tag) {
						t.Fatalf("seal = %x %x, want %x %x", ct, tag, []byte(tc.CT), []byte(tc.Tag))
					}
					if openErr != nil {
						t.Fatalf("open: %v", openErr)
					}
					if !bytes.Equal(pt, tc.Msg) {
						t.Fatalf("open = %x, want %x", pt, []byte(tc.Msg))
					}
				case "invalid":
					// Forged or modified tags must never open.
					if openErr == nil {
						t.Fatalf("invalid vector %v opened to %x", tc.Flags, pt)
					}
					if !errors.Is(openErr, ErrDecrypt) {
						t.Fatalf("error %v does not wrap ErrDecrypt", openErr)
					}
				default:
					t.Fatalf("unknown result %q", tc.Result)
				}
			})
			if tc.Result == "valid" {
				valid++
			} else {
				invalid++
			}
		}
	}
	if valid == 0 || invalid == 0 || otherIV == 0 {
		t.Fatalf("ran %d valid, %d invalid, %d other-IV vectors; the file layout changed", valid, invalid, otherIV)
	}
	t.Logf("AES-256-GCM vectors: %d valid, %d invalid (96-bit IV), %d refused for IV size", valid, invalid, otherIV)
}

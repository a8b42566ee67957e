package clamav_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/clamav"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// fakeClamd is a real TCP server speaking clamd's INSTREAM: it finds the EICAR test string.
func fakeClamd(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				cmd := make([]byte, len("zINSTREAM\x00"))
				if _, err := io.ReadFull(c, cmd); err != nil || string(cmd) != "zINSTREAM\x00" {
					c.Write([]byte("UNKNOWN COMMAND\x00"))
					return
				}
				var got bytes.Buffer
				for {
					var n uint32
					if err := binary.Read(c, binary.BigEndian, &n); err != nil {
						return
					}
					if n == 0 {
						break
					}
					io.CopyN(&got, c, int64(n))
				}
				if bytes.Contains(got.Bytes(), []byte("EICAR-STANDARD-ANTIVIRUS-TEST-FILE")) {
					c.Write([]byte("stream: Win.Test.EICAR_HDB-1 FOUND\x00"))
					return
				}
				c.Write([]byte("stream: OK\x00"))
			}()
		}
	}()
	return ln.Addr().String()
}

func TestScan(t *testing.T) {
	s := &clamav.Scanner{Addr: fakeClamd(t)}
	clean := bytes.Repeat([]byte("plain text "), 20000) // several chunks
	if err := s.Scan(context.Background(), clean); err != nil {
		t.Fatalf("clean file: %v", err)
	}
	eicar := []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
	if err := s.Scan(context.Background(), eicar); phr.ErrorCode(err) != clamav.Infected {
		t.Fatalf("EICAR: %v, want infected", err)
	}
	// A scanner that cannot be reached stores nothing unscanned.
	down := &clamav.Scanner{Addr: "127.0.0.1:1"}
	if err := down.Scan(context.Background(), clean); phr.ErrorCode(err) != phr.EUNAVAILABLE {
		t.Fatalf("scanner down: %v, want EUNAVAILABLE", err)
	}
}

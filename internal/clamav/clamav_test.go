package clamav_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/clamav"
	"github.com/vitalnexa/vitalnexa/internal/clamav/clamavtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

func TestScan(t *testing.T) {
	s := &clamav.Scanner{Addr: clamavtest.NewServer(t)}
	clean := bytes.Repeat([]byte("plain text "), 20000) // several chunks
	if err := s.Scan(context.Background(), clean); err != nil {
		t.Fatalf("clean file: %v", err)
	}
	if err := s.Scan(context.Background(), []byte(clamavtest.EICAR)); phr.ErrorCode(err) != clamav.Infected {
		t.Fatalf("EICAR: %v, want infected", err)
	}
	// A scanner that cannot be reached stores nothing unscanned.
	down := &clamav.Scanner{Addr: "127.0.0.1:1"}
	if err := down.Scan(context.Background(), clean); phr.ErrorCode(err) != phr.EUNAVAILABLE {
		t.Fatalf("scanner down: %v, want EUNAVAILABLE", err)
	}
}

// Package clamavtest is a stand-in for a ClamAV daemon in tests: a real TCP server speaking
// clamd's INSTREAM command that finds the EICAR test string and nothing else.
package clamavtest

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// EICAR is the antivirus test string every scanner reports.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// NewServer starts the stand-in, closed when tb ends, and returns its address.
func NewServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func serve(c net.Conn) {
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
}

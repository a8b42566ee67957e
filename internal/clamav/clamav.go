// Package clamav scans uploads with a ClamAV daemon (clamd) over its INSTREAM command.
package clamav

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// chunkSize is how much is sent per INSTREAM chunk; clamd's StreamMaxLength bounds the total.
const chunkSize = 64 << 10

// Scanner talks to clamd at Addr ("host:port", or a unix socket path starting with "/").
type Scanner struct {
	Addr    string
	Timeout time.Duration // the whole scan; default 30 s
}

// Infected is the error code of a positive scan; the web layer answers it 422.
const Infected = "unprocessable"

// Scan sends data to clamd. It returns nil when clamd answers OK, a *phr.Error with code
// Infected when it finds something (the signature name is not returned to the client), and
// EUNAVAILABLE when clamd cannot be asked: an upload is never stored unscanned.
func (s *Scanner) Scan(ctx context.Context, data []byte) error {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	network := "tcp"
	if strings.HasPrefix(s.Addr, "/") {
		network = "unix"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, s.Addr)
	if err != nil {
		return unavailable(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	w := bufio.NewWriter(conn)
	w.WriteString("zINSTREAM\x00")
	var size [4]byte
	for off := 0; off < len(data); off += chunkSize {
		end := min(off+chunkSize, len(data))
		binary.BigEndian.PutUint32(size[:], uint32(end-off))
		w.Write(size[:])
		w.Write(data[off:end])
	}
	binary.BigEndian.PutUint32(size[:], 0)
	w.Write(size[:])
	if err := w.Flush(); err != nil {
		return unavailable(err)
	}
	reply, err := bufio.NewReader(conn).ReadBytes(0)
	if err != nil && len(reply) == 0 {
		return unavailable(err)
	}
	r := string(bytes.TrimRight(reply, "\x00\n"))
	switch {
	case strings.HasSuffix(r, " OK"):
		return nil
	case strings.HasSuffix(r, " FOUND"):
		return &phr.Error{Code: Infected, Message: "The file was refused by the malware scan.", Field: "file"}
	default:
		return unavailable(fmt.Errorf("unexpected answer %q", r))
	}
}

func unavailable(err error) error {
	return fmt.Errorf("clamav: %w: %w", phr.Errorf(phr.EUNAVAILABLE, "The malware scanner is not available. Try again later."), err)
}

package web

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// A body is held as it arrives, not as it is announced: a client that declares 16 MiB and
// sends 10 bytes makes the server hold a buffer of the first step, not of 16 MiB.
func TestReadAllGrowsWithWhatArrives(t *testing.T) {
	t.Parallel()
	const declared = 16 << 20
	got, err := readAll(bytes.NewReader([]byte("0123456789")), declared, 64<<10)
	if err != nil || string(got) != "0123456789" {
		t.Fatalf("readAll = %q, %v", got, err)
	}
	if cap(got) > 64<<10 {
		t.Fatalf("a 10-byte body took a buffer of %d bytes for a declared %d", cap(got), declared)
	}
	// All of a body that keeps its word, read a byte at a time, and within twice its size.
	body := bytes.Repeat([]byte("abcdefgh"), 300_000)
	got, err = readAll(iotest.OneByteReader(bytes.NewReader(body)), int64(len(body)), 64<<10)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("readAll lost bytes: %d of %d, %v", len(got), len(body), err)
	}
	if cap(got) > len(body)+len(body)/100 { // allocation size classes round up a little
		t.Fatalf("cap %d for %d bytes: the buffer grew past the expected size", cap(got), len(body))
	}
	// Given its size up front (the bytes are already in memory), one buffer.
	got, err = readAll(bytes.NewReader(body), int64(len(body)), int64(len(body)))
	if err != nil || !bytes.Equal(got, body) || cap(got) > len(body)+len(body)/100 {
		t.Fatalf("readAll with the size up front: %d bytes, cap %d, %v", len(got), cap(got), err)
	}
	// Bytes past the expected size are not dropped.
	got, err = readAll(bytes.NewReader(body), 1000, 1000)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("readAll past the size: %d of %d bytes, %v", len(got), len(body), err)
	}
	if _, err := readAll(iotest.ErrReader(io.ErrUnexpectedEOF), 10, 10); err != io.ErrUnexpectedEOF {
		t.Fatalf("read error: %v", err)
	}
}

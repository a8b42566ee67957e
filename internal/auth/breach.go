package auth

import (
	"bytes"
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Defaults of BreachOptions.
const (
	DefaultBreachBaseURL = "https://api.pwnedpasswords.com"
	DefaultBreachTimeout = 2 * time.Second
)

const (
	// Have I Been Pwned refuses requests without a User-Agent and asks that it name the service.
	breachUserAgent = "VitalNexa-breached-password-check"
	// A padded range answer is about 1,000 lines of 40 bytes; anything far larger is not one,
	// and reading it would let a misbehaving server make us buffer without bound.
	maxRangeBody = 1 << 20
	// Operator files smaller than this are loaded into a map; larger ones (the full HIBP file is
	// about 40 GB) are binary-searched on disk so that memory stays constant.
	offlineMapLimit = 1 << 20
	// The longest operator-file line, CR included: 40 hex digits, ":" and a count. 64 leaves
	// room for 22 digits, more than any uint64.
	maxHashLine = 64
	// How many evenly spaced lines of a large operator file NewBreachChecker compares to catch
	// a file that is not sorted by hash (HIBP also publishes one ordered by prevalence).
	sortSamples = 64
)

//go:embed common_passwords.txt
var commonPasswordsText string

// commonPasswords is the built-in list, folded with foldPassword, parsed on first use and then
// shared read-only by every BreachChecker.
var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{})
	for _, line := range strings.Split(commonPasswordsText, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		set[foldPassword(line)] = struct{}{}
	}
	return set
})

// foldPassword is the key of the built-in list. Folding both sides makes "PASSWORD1!" and
// "password1!" hits as well as "Password1!"; exact matches are hits too, since a string always
// folds to the same key as itself.
func foldPassword(s string) string { return strings.ToLower(s) }

// BreachOptions configures NewBreachChecker. The zero value asks Have I Been Pwned with the
// default timeout and uses the built-in list of common passwords.
type BreachOptions struct {
	// BaseURL is the root of the Pwned Passwords range API; "" means DefaultBreachBaseURL. It
	// must be an http or https URL; a path (a proxy mount point) is allowed.
	BaseURL string
	// Timeout bounds one remote request, body included; 0 means DefaultBreachTimeout.
	Timeout time.Duration
	// HTTPClient sends the range requests; nil means a client of this package's own.
	HTTPClient *http.Client
	// OfflineFile is an optional operator file of SHA-1 hashes of breached passwords, in the
	// format of HIBP's downloadable file: one upper- or lower-case hex SHA-1 per line,
	// optionally followed by ":count", LF or CRLF line ends. A count of 0 means not breached.
	//
	// Files of 1 MiB or more are searched on disk, not loaded, and MUST be sorted by hash
	// (HIBP's "ordered by hash" file and the output of its downloader are). NewBreachChecker
	// checks the order of a sample of lines only; a file that is out of order elsewhere gives
	// wrong "not breached" answers for the hashes it misplaces. Blank lines are skipped in
	// small files and refused in large ones.
	OfflineFile string
	// Disabled turns the remote check off: Check then consults only the built-in list and
	// OfflineFile, and never reports RemoteChecked.
	Disabled bool
}

// BreachResult is the verdict of BreachChecker.Check.
type BreachResult struct {
	// Breached reports that the password is on the built-in list, in the operator file or
	// known to Have I Been Pwned. A breached password must be refused.
	Breached bool
	// RemoteChecked reports that Have I Been Pwned answered. When Breached is false and
	// RemoteChecked is false, the remote check could not be made (or is Disabled): the verdict
	// rests on the offline lists only, and the caller should check again at the next login.
	// When Breached is true the verdict is final whatever RemoteChecked says.
	RemoteChecked bool
	// RemoteDown reports that the remote check is enabled but could not be made: the caller
	// should check this password again when it next sees it.
	RemoteDown bool
}

// BreachChecker tells whether a password is known to be breached (plan §4.1), from the
// built-in list of common passwords, an optional operator file of hashes and the Have I Been
// Pwned range API with k-anonymity: only the first 5 hex digits of the password's SHA-1 ever
// leave the server, and responses are padded so their size does not reveal the prefix either.
//
// It is meant for registration, password change and the re-check at login, never for each
// keystroke. It is safe for concurrent use.
type BreachChecker struct {
	rangeURL string // BaseURL + "/range/"; the 5-digit prefix is appended
	timeout  time.Duration
	client   *http.Client
	remote   bool
	common   map[string]struct{}
	hashes   map[[sha1.Size]byte]struct{} // a small operator file; only counts > 0
	file     *sortedHashFile              // a large operator file
}

// NewBreachChecker returns a BreachChecker, or an error when BaseURL is not an http(s) URL,
// Timeout is negative, or OfflineFile cannot be read, is empty, is malformed or (for a large
// file) is found out of order. Errors name the option and never quote the file's content.
// When it opens a large OfflineFile, the BreachChecker keeps it open until Close.
func NewBreachChecker(opts BreachOptions) (*BreachChecker, error) {
	base := opts.BaseURL
	if base == "" {
		base = DefaultBreachBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		// The URL is not quoted: it could carry credentials.
		return nil, errors.New("auth: breach BaseURL must be an http or https URL without credentials, query or fragment")
	}
	timeout := opts.Timeout
	if timeout < 0 {
		return nil, errors.New("auth: breach Timeout must not be negative")
	}
	if timeout == 0 {
		timeout = DefaultBreachTimeout
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	c := &BreachChecker{
		rangeURL: strings.TrimRight(base, "/") + "/range/",
		timeout:  timeout,
		client:   client,
		remote:   !opts.Disabled,
		common:   commonPasswords(),
	}
	if opts.OfflineFile != "" {
		if c.hashes, c.file, err = openHashFile(opts.OfflineFile); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Close releases the operator file, if one is open. Check must not be called after Close.
func (c *BreachChecker) Close() error {
	if c.file == nil {
		return nil
	}
	return c.file.f.Close()
}

// Check tells whether password is breached. The offline lists are always consulted; when they
// do not know the password and the remote check is on, Have I Been Pwned is asked.
//
// An unreachable, slow (over Timeout), failing (not 200) or garbled remote is not an error:
// Check returns the offline verdict with RemoteChecked false. Check returns an error only when
// ctx ends before the remote answers (ctx.Err()) or when reading the operator file fails; the
// error never contains the password or its hash. The caller should then treat the check as
// not made, not as passed.
func (c *BreachChecker) Check(ctx context.Context, password string) (BreachResult, error) {
	if _, ok := c.common[foldPassword(password)]; ok {
		return BreachResult{Breached: true}, nil
	}
	sum := sha1.Sum([]byte(password))
	breached, err := c.checkOffline(sum)
	if err != nil {
		return BreachResult{}, err
	}
	if breached {
		// No need to ask: a request would only tell HIBP a prefix of a known-bad password.
		return BreachResult{Breached: true}, nil
	}
	if !c.remote {
		return BreachResult{}, nil
	}
	breached, err = c.checkRemote(ctx, sum)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			// The caller has gone away; that says nothing about the remote's health.
			return BreachResult{}, ctxErr
		}
		// The remote is down or misbehaving. Failing registration because of a third party
		// would be worse than a later re-check, which RemoteDown asks for.
		return BreachResult{RemoteDown: true}, nil
	}
	return BreachResult{Breached: breached, RemoteChecked: true}, nil
}

func (c *BreachChecker) checkOffline(sum [sha1.Size]byte) (bool, error) {
	if _, ok := c.hashes[sum]; ok {
		return true, nil
	}
	if c.file != nil {
		return c.file.lookup(sum)
	}
	return false, nil
}

var errRangeBody = errors.New("auth: breach range API answer is malformed")

// checkRemote asks the range API about sum. Its errors only say why the remote could not be
// used; Check does not pass them on.
func (c *BreachChecker) checkRemote(ctx context.Context, sum [sha1.Size]byte) (bool, error) {
	hexSum := strings.ToUpper(hex.EncodeToString(sum[:]))
	prefix, suffix := hexSum[:5], hexSum[5:]

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.rangeURL+prefix, nil)
	if err != nil {
		return false, fmt.Errorf("auth: breach range request: %w", err)
	}
	// Padding makes every answer about the same size, so someone watching the TLS stream
	// cannot tell the prefix (and so narrow the password) from the answer's length.
	req.Header.Set("Add-Padding", "true")
	req.Header.Set("User-Agent", breachUserAgent)
	resp, err := c.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("auth: breach range request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("auth: breach range API answered status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRangeBody+1))
	if err != nil {
		return false, fmt.Errorf("auth: breach range answer: %w", err)
	}
	if len(body) > maxRangeBody {
		return false, errRangeBody
	}
	return matchRange(body, suffix)
}

// matchRange reports whether body, a range answer of "SUFFIX:COUNT" lines, lists suffix with a
// count above 0; padding lines have count 0. Every line must be well-formed and there must be
// at least one: an empty or garbled answer (a captive portal, a proxy's error page) is an
// error, not a "not breached".
func matchRange(body []byte, suffix string) (bool, error) {
	found, lines := false, 0
	for len(body) > 0 {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			continue
		}
		s, count, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(s) != 2*sha1.Size-5 || !isHex(s) || !isCount(count) {
			return false, errRangeBody
		}
		lines++
		if bytes.EqualFold(s, []byte(suffix)) && !isZero(count) {
			found = true
		}
	}
	if lines == 0 {
		return false, errRangeBody
	}
	return found, nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// isCount reports whether b is 1 to 20 decimal digits.
func isCount(b []byte) bool {
	if len(b) == 0 || len(b) > 20 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isZero(count []byte) bool { return len(bytes.Trim(count, "0")) == 0 }

// parseHashLine parses "HASH" or "HASH:COUNT", with or without a trailing CR. breached is
// false for a count of 0.
func parseHashLine(line []byte) (hash [sha1.Size]byte, breached, ok bool) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) < 2*sha1.Size || !isHex(line[:2*sha1.Size]) {
		return hash, false, false
	}
	hex.Decode(hash[:], line[:2*sha1.Size]) // cannot fail: checked by isHex
	rest := line[2*sha1.Size:]
	if len(rest) == 0 {
		return hash, true, true
	}
	if rest[0] != ':' || !isCount(rest[1:]) {
		return hash, false, false
	}
	return hash, !isZero(rest[1:]), true
}

// openHashFile loads a small operator file into a set, or opens a large one for searching.
func openHashFile(path string) (map[[sha1.Size]byte]struct{}, *sortedHashFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: breach OfflineFile: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("auth: breach OfflineFile: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, errors.New("auth: breach OfflineFile is not a regular file")
	}
	if fi.Size() >= offlineMapLimit {
		s, err := newSortedHashFile(f, fi.Size())
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		return nil, s, nil
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("auth: breach OfflineFile: %w", err)
	}
	set := make(map[[sha1.Size]byte]struct{})
	n := 0
	for i, line := range bytes.Split(data, []byte{'\n'}) {
		if len(bytes.TrimSuffix(line, []byte{'\r'})) == 0 {
			continue
		}
		n++
		hash, breached, ok := parseHashLine(line)
		if !ok {
			return nil, nil, fmt.Errorf("auth: breach OfflineFile line %d is not a SHA-1 hash with an optional :count", i+1)
		}
		if breached {
			set[hash] = struct{}{}
		}
	}
	if n == 0 {
		// Most likely a failed download; refusing it beats running without the list.
		return nil, nil, errors.New("auth: breach OfflineFile is empty")
	}
	return set, nil, nil
}

var errHashFile = errors.New("auth: breach OfflineFile is malformed or not sorted by hash")

// sortedHashFile is a large operator file, sorted by hash, searched with ReadAt (safe for
// concurrent use) in constant memory.
type sortedHashFile struct {
	f   *os.File
	end int64 // just after the last line's content: trailing CR and LF bytes are left out
}

// newSortedHashFile finds the end of the last line and compares a sample of lines spread over
// the file, the first and the last among them, so that a file ordered otherwise than by hash
// is refused at start-up rather than answering wrongly.
func newSortedHashFile(f *os.File, size int64) (*sortedHashFile, error) {
	s := &sortedHashFile{f: f, end: size}
	tail, err := s.read(make([]byte, 2*maxHashLine), max(0, size-2*maxHashLine))
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimRight(tail, "\r\n")
	if len(trimmed) == 0 {
		return nil, errHashFile
	}
	s.end = size - int64(len(tail)-len(trimmed))
	var last int64 // the start of the last line
	if i := bytes.LastIndexByte(trimmed, '\n'); i >= 0 {
		last = s.end - int64(len(trimmed)-i-1)
	} else if s.end > int64(len(trimmed)) {
		return nil, errHashFile // the last line is too long
	}

	var prev [sha1.Size]byte
	for k := int64(0); k <= sortSamples; k++ {
		off := s.end * k / sortSamples
		if k == sortSamples {
			off = last
		}
		start, hash, _, err := s.lineAt(off)
		if err != nil {
			return nil, err
		}
		if start >= s.end {
			continue // off fell inside the last line
		}
		if bytes.Compare(hash[:], prev[:]) < 0 {
			return nil, errHashFile
		}
		prev = hash
	}
	return s, nil
}

// lookup reports whether hash is in the file with a count above 0. It is a binary search over
// byte offsets: for an offset off, the line that starts first at or after off has a hash that
// grows with off, so the smallest off whose line has a hash >= the target finds the target's
// line if there is one.
func (s *sortedHashFile) lookup(target [sha1.Size]byte) (bool, error) {
	lo, hi := int64(0), s.end
	for lo < hi {
		mid := lo + (hi-lo)/2
		start, hash, _, err := s.lineAt(mid)
		if err != nil {
			return false, err
		}
		if start >= s.end || bytes.Compare(hash[:], target[:]) >= 0 {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	start, hash, breached, err := s.lineAt(lo)
	if err != nil {
		return false, err
	}
	return start < s.end && hash == target && breached, nil
}

// lineAt parses the first line that starts at or after off. It returns start == s.end when no
// line does.
func (s *sortedHashFile) lineAt(off int64) (start int64, hash [sha1.Size]byte, breached bool, err error) {
	var buf [maxHashLine + 1]byte
	start = off
	if off > 0 {
		// A line starts at off exactly when the byte before it is a newline, so look from there.
		b, err := s.read(buf[:], off-1)
		if err != nil {
			return 0, hash, false, err
		}
		i := bytes.IndexByte(b, '\n')
		switch {
		case i >= 0:
			start = off + int64(i)
		case off-1+int64(len(b)) >= s.end:
			return s.end, hash, false, nil
		default:
			return 0, hash, false, errHashFile // a line longer than maxHashLine
		}
	}
	if start >= s.end {
		return s.end, hash, false, nil
	}
	b, err := s.read(buf[:], start)
	if err != nil {
		return 0, hash, false, err
	}
	line, _, found := bytes.Cut(b, []byte{'\n'})
	if !found && start+int64(len(b)) < s.end {
		return 0, hash, false, errHashFile
	}
	hash, breached, ok := parseHashLine(line)
	if !ok {
		return 0, hash, false, errHashFile
	}
	return start, hash, breached, nil
}

// read reads len(buf) bytes at off, or fewer where s.end comes first.
func (s *sortedHashFile) read(buf []byte, off int64) ([]byte, error) {
	if n := s.end - off; n < int64(len(buf)) {
		buf = buf[:max(n, 0)]
	}
	n, err := s.f.ReadAt(buf, off)
	if n == len(buf) {
		return buf, nil // ReadAt may report io.EOF along with a full read at the very end
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the file shrank under us
	}
	return nil, fmt.Errorf("auth: reading breach OfflineFile: %w", err)
}

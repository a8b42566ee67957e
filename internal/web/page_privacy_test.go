package web_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestDoNotSellPageIsPublicStaticAndScriptFree(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	for name, token := range map[string]string{
		"without a token": "",
		// A public page ignores credentials, even broken ones.
		"with a bad token": "not-a-token",
	} {
		r := e.do("GET", "/privacy/do-not-sell", token, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
	}
	r := e.do("GET", "/privacy/do-not-sell", "", nil)
	if got, want := r.header.Get("Content-Type"), "text/html; charset=utf-8"; got != want {
		t.Fatalf("Content-Type = %q, want %q", got, want)
	}
	page := strings.Join(strings.Fields(string(r.body)), " ") // as a reader sees it: lines joined
	for _, want := range []string{
		"<!DOCTYPE html>",
		"VitalNexa never sells your personal information, and never shares it with anyone for advertising.",
		"right to know", "right to delete", "right to opt out of sale or sharing", "right to correct",
		"right to limit the use of sensitive personal information", "right to non-discrimination",
		"GET /api/me/export", "DELETE /api/me", "PATCH /api/me", "PATCH /api/health-records/{id}",
		`PUT /api/me/do-not-sell</code> with <code>{"do_not_sell": true}`, "GET /api/me/privacy-requests",
		"due one month after we receive it",
		"We will not discriminate against you for exercising any of these rights",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not say %q", want)
		}
	}
	// The service's strict headers hold here too: the page needs no exception.
	for h, want := range map[string]string{
		"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"Referrer-Policy":           "no-referrer",
		"Cache-Control":             "no-store",
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	// Attack: anything that would run or load under another page's rules (script, handlers,
	// styles the CSP would block, frames, forms, remote resources).
	active := regexp.MustCompile(`(?i)<script|javascript:|\son[a-z]+\s*=|<style|\sstyle\s*=|<link|<img|<iframe|<object|<embed|<form|src\s*=|https?://`)
	if m := active.FindString(page); m != "" {
		t.Fatalf("the page holds %q", m)
	}
	// Audited like every request, with no user.
	var found bool
	for _, a := range e.auditRows() {
		if a.Action == "GET /privacy/do-not-sell" && a.Status == http.StatusOK && a.UserID == "" {
			found = true
		}
	}
	if !found {
		t.Fatal("no audit row for the page")
	}
	// Attack: a query string the contract does not know.
	if r := e.do("GET", "/privacy/do-not-sell?next=https://evil.example", "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("unknown query parameter: %d", r.status)
	}
}

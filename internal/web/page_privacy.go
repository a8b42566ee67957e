package web

import (
	_ "embed"
	"net/http"
	"strconv"
)

// pageDoNotSell is the CCPA/CPRA "Do Not Sell or Share" page: static HTML with no script,
// no style and nothing to load, so it renders under the service's CSP (default-src 'none').
//
//go:embed static/do-not-sell.html
var pageDoNotSell []byte

// handlePageDoNotSell serves the Do Not Sell page to anyone, signed in or not. It holds no
// user data; like every request it gets its audit row.
func (s *Server) handlePageDoNotSell() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(pageDoNotSell)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(pageDoNotSell)
	})
}

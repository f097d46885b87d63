package worker

import (
	"crypto/tls"
	"testing"
)

// TestH2TLSAcceptable: HTTP/2 over TLS needs TLS 1.2 or later, and with
// TLS 1.2 an ephemeral key exchange and an AEAD cipher (RFC 9113 §9.2,
// Appendix A), as Go's HTTP/2 server checks, unless prohibited suites are
// permitted.
func TestH2TLSAcceptable(t *testing.T) {
	for _, tc := range []struct {
		version, suite uint16
		permit, want   bool
	}{
		{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, false, true},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, false, true},
		{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, false, true},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false, false},
		{tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false, false},
		{tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, true, true},
		{tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true, false},
	} {
		cs := tls.ConnectionState{Version: tc.version, CipherSuite: tc.suite}
		if got := h2TLSAcceptable(cs, tc.permit); got != tc.want {
			t.Errorf("%s with %s (permit %v): %v, want %v",
				tls.VersionName(tc.version), tls.CipherSuiteName(tc.suite), tc.permit, got, tc.want)
		}
	}
}

package tlsconfig

import "strings"

// MismatchHint names the likely cause of a TLS mismatch between a client
// (the CLI, or a rosterd joining a cluster) and the server, whose errors
// say little ("error reading server preface: EOF", "broken pipe"); "" when
// line shows none. tlsOn: the client used TLS. Both programs name their
// TLS files with the same flags.
func MismatchHint(line string, tlsOn bool) string {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(line, s) {
				return true
			}
		}
		return false
	}
	switch {
	case !tlsOn && has("error reading server preface", "tls: first record does not look like a TLS handshake"):
		// A TLS server reads the HTTP/2 preface as a bad record and hangs up.
		return "the server expects TLS: pass --tls-ca (and --tls-cert/--tls-key if it verifies clients)"
	case tlsOn && has("first record does not look like a TLS handshake", "server gave HTTP response"):
		return "the server does not speak TLS: drop --tls-*"
	case tlsOn && has("certificate required", "bad certificate", "unknown certificate authority",
		"expired certificate", "certificate unknown", "broken pipe", "connection reset by peer"):
		// With TLS 1.3 the server checks the client's certificate after the
		// client thinks the handshake is done: the refusal arrives as an
		// alert, or as a connection closed under the first write.
		return "the server refused the client certificate (missing, expired or from another CA): check --tls-cert/--tls-key"
	}
	return ""
}

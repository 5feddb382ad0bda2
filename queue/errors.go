package queue

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNotFound: the queue does not exist (or no queue matches the pattern). It is not an
	// empty queue; it becomes readable once the queue is declared.
	ErrNotFound = errors.New("queue not found")
	// ErrUnknownBroker: the selector names a broker the Reader was not configured with.
	ErrUnknownBroker = errors.New("unknown broker")
	// ErrUnsupported: the broker's mode cannot answer this request (patterns and per-consumer
	// detail need the management API).
	ErrUnsupported = errors.New("unsupported by this broker mode")
	// ErrStatsPending: the management API lists the queue but has no depths for it yet (it
	// was just declared, or the broker just restarted). Unknown, not empty; it clears within
	// about one statistics interval.
	ErrStatsPending = errors.New("queue statistics not available yet")
	// ErrClosed: the Reader was closed.
	ErrClosed = errors.New("reader closed")
)

// redactedError hides secrets in the text of an error while keeping its chain: Unwrap
// returns the original error, so errors.Is and errors.As still see every sentinel and type.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string { return redact(e.err.Error(), e.secrets) }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr wraps err so that none of secrets (and no URL userinfo) appears in its text.
func redactErr(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var keep []string
	for _, s := range secrets {
		if s != "" {
			keep = append(keep, s)
		}
	}
	return &redactedError{err: err, secrets: keep}
}

// userinfoRE matches the userinfo of a URL inside free text: [scheme]://user:password@
var userinfoRE = regexp.MustCompile(`((?:[a-zA-Z][a-zA-Z0-9+.-]*)?://)[^/\s]*@`)

const redacted = "xxxxx"

// redact removes URL userinfo and every secret from s.
func redact(s string, secrets []string) string {
	s = userinfoRE.ReplaceAllString(s, "${1}"+redacted+"@")
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, redacted)
		// net/url escapes some characters of a password when it prints a URL.
		if esc := url.QueryEscape(sec); esc != sec {
			s = strings.ReplaceAll(s, esc, redacted)
		}
		if esc := url.PathEscape(sec); esc != sec {
			s = strings.ReplaceAll(s, esc, redacted)
		}
	}
	return s
}

// RedactURL returns raw with any user name and password replaced, for logs and errors. It
// does not need raw to parse: everything between "://" (or the start, when there is none)
// and the last '@' is userinfo.
func RedactURL(raw string) string {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndex(raw, "@")
	if at < start {
		return raw
	}
	return raw[:start] + redacted + raw[at:]
}

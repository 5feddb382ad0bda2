// Package queue turns RabbitMQ brokers into queue snapshots for the scaler.
//
// The main entry point is Reader: NewReader with the brokers (BrokerConfig, usually from
// ParseBroker and LoadCredentials), Start, then Snapshot(ctx, Selector) from any number of
// goroutines, and Close.
//
// Two modes, chosen by the broker URL's scheme:
//
//   - Management HTTP API (http://, https://; recommended). One GET /api/queues (scoped to a
//     vhost when only one vhost is watched) with trimmed columns, followed page by page to the
//     end, serves every selector on that broker: ready, unacknowledged, consumers, publish and
//     deliver rates, and regular-expression patterns. Per-consumer detail (Consumers) adds one
//     GET /api/consumers and one GET /api/channels per refresh, only once someone asked for
//     it. The numbers come from the management statistics database, which lags the queues by
//     up to one sample interval; Snapshot.At is the time of the sample they come from. When
//     every selector on the broker is DepthsOnly, the listing is the queue totals without
//     statistics instead, in one request and at less than half the broker's CPU: ready and
//     unacknowledged only, Snapshot.At the time of the request.
//   - AMQP 0-9-1 (amqp://, amqps://). A passive declare per watched queue gives ready messages
//     and consumers, exact at Snapshot.At; unacknowledged messages are invisible
//     (Snapshot.InFlightVisible is false). Exact queue names only. One connection per vhost,
//     reused; a short-lived channel per declare; a deadline on every call; redial with
//     exponential backoff after the connection drops.
//
// Invariants:
//
//   - A failed read is an error, never an empty snapshot: after a failed refresh every
//     Snapshot of that broker returns the refresh error until a refresh succeeds.
//   - A queue that does not exist is ErrNotFound, distinct from an empty queue, and becomes
//     readable at the first refresh after it is declared. A queue the management API lists
//     without depths (no statistics yet, as right after a broker restart) is ErrStatsPending,
//     never zero.
//   - Each broker is read by one goroutine, at most once per Options.Refresh however many
//     callers ask (plus one early read the first time a selector is asked for); Snapshot
//     never touches the network. Nothing is read for a broker nobody asked about.
//   - Credentials never appear in error text (URLs are redacted, passwords scrubbed), while
//     errors.Is and errors.As still see the wrapped errors.
//   - Every goroutine is owned by the Reader: Close cancels and waits for them.
//
// The package does not log: it returns errors and exposes counters through BrokerStats.
package queue

// Package simulate replays arrival traces through headroom's real decision code
// (scaler.Decide, scaler.HPA) and through models of the alternatives, on a model of a shared
// cluster, and scores every policy on the same arrivals.
//
// Main entry points: LoadScenario (or LoadShipped for the built-in scenarios under
// scenarios/), Run, and the Report's WriteTable, WriteJSON and WriteOutputs. ReadTrace reads
// the two trace formats on its own.
//
// # Model
//
// Time is discrete: one tick is one second, and the run is deterministic for a scenario and
// its seed. Each tick, in order: pods whose start latency has passed turn Ready; workers whose
// service ended acknowledge; the second's arrivals join the queue; the policy's controllers
// act (KEDA, the HPA, the ReplicaSet controller, the scheduler); queued messages are delivered
// to free consumers; the scaler takes its broker reading; the scores are sampled.
//
//   - Arrivals come from a counts trace (requests per second or minute, a minute's count
//     spread evenly over its seconds), an events trace (one row per request), or a generator
//     (constant, step, burst, diurnal, poisson). arrivals.scale thins requests into messages
//     deterministically (⌊C(t)·scale⌋ − ⌊C(t−1)·scale⌋ in second t).
//   - Service times are per message, fixed in advance (a hash of the seed and the message's
//     index, or the size columns of an events trace: base + Σ perUnit[column] × value), so
//     every policy serves the same work; they are rounded up to whole seconds.
//   - The queue is FIFO cohorts (messages that arrived in the same second), so per-tick work
//     does not grow with the message rate. Each worker has `consumers` consumers with
//     prefetch 1; a message is unacknowledged from delivery to the end of its service.
//   - Pods: created by a replica change, bound by the scheduler model (filter with
//     capacity.FitNode on requests, score by LeastAllocated, first node on a tie) or left
//     Pending-unschedulable and retried when room is freed; Ready after startLatency. The
//     fleet at t=0 is already Ready.
//   - Scale-down: the ReplicaSet controller's victim order (see sim.victims). A deleted
//     worker stops consuming at once (SIGTERM) and finishes the messages in hand that end
//     within workload.terminationGracePeriod (default 30 s, the same for every policy),
//     keeping its node's room meanwhile; what it still holds when the grace period ends goes
//     back to the head of the queue and the worker counts in busy_killed. headroom annotates
//     pod-deletion-cost from its last broker reading (idle 0, busy = messages held), so idle
//     workers go first; a worker idle at the reading can still take a message before the
//     deletion (the reading is up to brokerRefresh old), which only the grace period saves.
//   - Cluster: nodes with allocatable CPU, memory and pods; other tenants' fixed requests and
//     usage per node; workers request the pod template's requests and use workload.usage.idle
//     or .busy (which may exceed the requests). A second in which some node uses more memory
//     than allocatable counts as an overcommit-second. OOM kills themselves are not modelled:
//     the overcommitted policy keeps its workers.
//
// # Policies
//
//   - headroom: KEDA with external-push over scaler.Decide. The scaler's queue reading
//     (ready, unacknowledged, busy workers, publish rate over 30 s) is refreshed every
//     brokerRefresh (default 5 s, the server's --refresh default), and the deletion costs
//     come from it; Ready, Pending, Current and LastScaleUp come live from the model. Fit is
//     capacity.Fit over the nodes' requests (the target's own pods at max(requests,
//     footprint), as the server counts them) and live usage, with the footprint override
//     when set and the reserve. The HPA gets
//     scaler.MetricValue(decision) at each sync (default behavior: scaler.ExactBehavior).
//     One target only: Share's arbitration between ScaledObjects is not modelled.
//   - keda-default: KEDA's RabbitMQ scaler, QueueLength 20 on ready + unacknowledged messages,
//     pollingInterval 30 s, cooldownPeriod 300 s, no HPA behavior (the legacy rules).
//   - keda-tuned: the same trigger with the scenario's queueLength and behavior.
//   - cpu-hpa: an HPA on CPU at targetUtilization of requests (default 70%), no scale to zero.
//   - fixed: a constant fleet. bound: every worker that fits by requests at t=0 (capped at
//     maxReplicas), Ready from the start and never removed — no policy can wait less.
//
// KEDA and the HPA are modelled as described on type keda; the HPA itself is scaler.HPA.
//
// # Scores and invariants
//
// Waits run from arrival to the start of the service that completed the message (a requeued
// message counts once, with its whole wait); messages still queued at the end count with the
// wait they had. Percentiles are exact (nearest rank over a per-second histogram). Every run
// checks Little's law: the integral of the ready queue over time equals the sum of the time
// messages spent in it, or Run fails. SPEC elasticity metrics compare supply (Ready workers)
// with demand d(t) = min(maxReplicas, ⌈rate(t) × mean service time / consumers⌉), rate(t)
// over the trailing max(60 s, mean service time); θ divides by max(d, 1).
package simulate

import CLiburing
import Metrics

extension LedgerSnapshot {
    /// Publishes the snapshot through swift-metrics gauges (whatever backend the
    /// process bootstrapped: Prometheus, statsd, …). Call it periodically.
    public func report(prefix: String = "torus", factory: any MetricsFactory = MetricsSystem.factory) {
        for kind in OperationKind.allCases {
            let c = self[kind]
            let dims = [("op", kind.description)]
            Gauge(label: "\(prefix)_operations_in_flight", dimensions: dims, factory: factory).record(c.inFlight)
            Gauge(label: "\(prefix)_operations_submitted", dimensions: dims, factory: factory).record(c.submitted)
            Gauge(label: "\(prefix)_operations_parked", dimensions: dims, factory: factory).record(c.parked)
        }
        for pool in BufferPoolKind.allCases {
            let b = self[pool]
            for (owner, value) in [("pool", b.pool), ("application", b.application), ("kernel", b.kernel)] {
                Gauge(label: "\(prefix)_buffers", dimensions: [("pool", pool.description), ("owner", owner)], factory: factory)
                    .record(value)
            }
        }
        Gauge(label: "\(prefix)_connections", factory: factory).record(connections)
        Gauge(label: "\(prefix)_direct_descriptors", factory: factory).record(directDescriptors)
    }

    /// The snapshot in Prometheus text exposition format.
    public func prometheusText(prefix: String = "torus") -> String {
        var out = PrometheusText()
        write(to: &out, prefix: prefix)
        return out.text
    }

    /// Appends the ledger's families to `out` (an application adds its own after).
    public func write(to out: inout PrometheusText, prefix: String = "torus") {
        out.family("\(prefix)_operations_in_flight", .gauge)
        for kind in OperationKind.allCases where self[kind].submitted > 0 {
            out.sample("\(prefix)_operations_in_flight", ["op": kind.description], self[kind].inFlight)
        }
        out.family("\(prefix)_operations_submitted_total", .counter)
        for kind in OperationKind.allCases where self[kind].submitted > 0 {
            out.sample("\(prefix)_operations_submitted_total", ["op": kind.description], self[kind].submitted)
        }
        out.family("\(prefix)_buffers", .gauge)
        for pool in BufferPoolKind.allCases {
            let b = self[pool]
            out.sample("\(prefix)_buffers", ["pool": pool.description, "owner": "pool"], b.pool)
            out.sample("\(prefix)_buffers", ["pool": pool.description, "owner": "application"], b.application)
            out.sample("\(prefix)_buffers", ["pool": pool.description, "owner": "kernel"], b.kernel)
        }
        out.single("\(prefix)_connections", .gauge, connections)
        out.single("\(prefix)_enobufs_total", .counter, noBufferReceives)
        out.single("\(prefix)_cq_overflows_total", .counter, cqOverflows)
        out.single("\(prefix)_busy_submits_total", .counter, busySubmits)
        out.single("\(prefix)_deferred_submissions_total", .counter, deferredSubmissions)
        out.single("\(prefix)_submit_errors_total", .counter, submitErrors)
        out.single("\(prefix)_stale_completions_total", .counter, staleCompletions)
        out.single("\(prefix)_accept_errors_total", .counter, acceptErrors)
        out.single("\(prefix)_receive_growth_failures_total", .counter, receiveGrowthFailures)
        out.single("\(prefix)_queue_limit_closes_total", .counter, queueLimitCloses)
        out.single("\(prefix)_deadline_checks_total", .counter, deadlineChecks)
        out.single("\(prefix)_receive_waits_total", .counter, receiveWaits)
        out.single("\(prefix)_direct_descriptors", .gauge, directDescriptors)
        out.single("\(prefix)_plain_descriptor_fallbacks_total", .counter, plainDescriptorFallbacks)
    }
}

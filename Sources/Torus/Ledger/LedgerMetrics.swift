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
    }

    /// The snapshot in Prometheus text exposition format.
    public func prometheusText(prefix: String = "torus") -> String {
        var out = ""
        out += "# TYPE \(prefix)_operations_in_flight gauge\n"
        for kind in OperationKind.allCases where self[kind].submitted > 0 {
            out += "\(prefix)_operations_in_flight{op=\"\(kind)\"} \(self[kind].inFlight)\n"
        }
        out += "# TYPE \(prefix)_operations_submitted_total counter\n"
        for kind in OperationKind.allCases where self[kind].submitted > 0 {
            out += "\(prefix)_operations_submitted_total{op=\"\(kind)\"} \(self[kind].submitted)\n"
        }
        out += "# TYPE \(prefix)_buffers gauge\n"
        for pool in BufferPoolKind.allCases {
            let b = self[pool]
            out += "\(prefix)_buffers{pool=\"\(pool)\",owner=\"pool\"} \(b.pool)\n"
            out += "\(prefix)_buffers{pool=\"\(pool)\",owner=\"application\"} \(b.application)\n"
            out += "\(prefix)_buffers{pool=\"\(pool)\",owner=\"kernel\"} \(b.kernel)\n"
        }
        out += "# TYPE \(prefix)_connections gauge\n\(prefix)_connections \(connections)\n"
        out += "# TYPE \(prefix)_enobufs_total counter\n\(prefix)_enobufs_total \(noBufferReceives)\n"
        out += "# TYPE \(prefix)_cq_overflows_total counter\n\(prefix)_cq_overflows_total \(cqOverflows)\n"
        return out
    }
}

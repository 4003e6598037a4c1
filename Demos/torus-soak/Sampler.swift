import Foundation
import HTTPTypes
import Torus
import TorusHTTP
import TorusHub

/// One look at the hub from outside.
struct Sample: Sendable {
    var uptime: Double
    var rssKiB: Int
    /// The anonymous part of RSS (heap, stacks, buffers): where a leak shows. The rest
    /// is file-backed (the binary and libraries), bounded by their size, and grows
    /// while code runs for the first time.
    var anonKiB: Int
    /// Bytes the hub's allocator says it holds (mallinfo2), in KiB.
    var heapKiB: Int
    var inFlight: Int
    var parked: Int
    var buffersOut: Int
    var connections: Int
    var routers: Int
    var subscribers: Int
    var commandsOK: Int
    var failures: Int
}

enum Sampler {
    /// RSS from /proc, then the ledger from /debug/ledger and the router and
    /// subscriber counts from /metrics, through TorusHTTP's client.
    static func take(_ hub: HubProcess, token: String, loop: EventLoop, started: ContinuousClock.Instant,
                     counts: Counts) async -> Sample {
        let resident = hub.resident
        var s = Sample(uptime: (ContinuousClock.now - started) / .seconds(1), rssKiB: resident.total,
                       anonKiB: resident.anon, heapKiB: -1,
                       inFlight: -1, parked: -1, buffersOut: -1, connections: -1, routers: -1, subscribers: -1,
                       commandsOK: counts.stableOK, failures: counts.failures)
        // A fresh client per sample: one keep-alive request, then one that closes the
        // connection, so the sampler leaves nothing open between samples.
        var configuration = HTTPClientConfiguration()
        configuration.connectTimeout = .seconds(5)
        configuration.requestTimeout = .seconds(10)
        let client = HTTPClient(loop: loop, configuration: configuration)
        let endpoint = HubEndpoint(hub.httpAddress, token: token)
        func get(_ target: String, close: Bool) async -> (HTTPResponse.Status, [UInt8])? {
            var fields: HTTPFields = [.authorization: endpoint.authorization()]
            if close { fields[.connection] = "close" }
            guard let r = try? await client.execute(HTTPClientRequest(host: endpoint.host, port: endpoint.port,
                                                                     target: target, headerFields: fields)),
                  let body = try? await r.body.collect(upTo: 4 << 20) else { return nil }
            return (r.status, body)
        }
        if let (status, body) = await get("/debug/ledger", close: false), status == .ok,
           let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
            s.inFlight = json["in_flight"] as? Int ?? -1
            s.parked = json["parked"] as? Int ?? -1
            s.buffersOut = json["buffers_out"] as? Int ?? -1
            s.connections = json["connections"] as? Int ?? -1
            s.heapKiB = (json["heap_in_use_bytes"] as? Int).map { $0 / 1024 } ?? -1
        }
        if let (status, body) = await get("/metrics", close: true), status == .ok {
            for line in String(decoding: body, as: UTF8.self).split(separator: "\n") {
                if line.hasPrefix("torus_hub_routers ") { s.routers = Int(line.split(separator: " ")[1]) ?? -1 }
                if line.hasPrefix("torus_hub_subscribers ") { s.subscribers = Int(line.split(separator: " ")[1]) ?? -1 }
            }
        }
        await client.shutdown()
        return s
    }
}

/// The end of a run: table, slope, CSV, plot.
enum Report {
    /// The slope of RSS (MiB) over uptime (hours) in the second half: the median of
    /// the slopes between every pair of its samples (Theil–Sen). A leak is a steady
    /// slope, which this measures as well as a least-squares fit; a lone high sample
    /// (an outbound slab taken by a burst and given back a second later, caught at the
    /// last sample) moves it far less, because it is one of many pairs, not an end
    /// point with leverage. A long run's half is thinned to at most `maxPoints` evenly
    /// spaced samples first, so that the pairs stay bounded (a 30-hour run at 5 s has
    /// 10,800 samples in its half: 58 million pairs; 400 make 80,000).
    static func slopeMiBPerHour(_ samples: [Sample], maxPoints: Int = 400,
                                _ value: (Sample) -> Int = { $0.rssKiB }) -> Double {
        let all = samples.suffix(max(2, samples.count - samples.count / 2))
        guard all.count >= 2 else { return 0 }
        let half = all.count <= maxPoints ? Array(all)
            : (0..<maxPoints).map { all[all.startIndex + $0 * (all.count - 1) / (maxPoints - 1)] }
        var slopes: [Double] = []
        slopes.reserveCapacity(half.count * (half.count - 1) / 2)
        for i in 0..<half.count {
            for j in (i + 1)..<half.count where half[j].uptime > half[i].uptime {
                let dy = Double(value(half[j]) - value(half[i])) / 1024
                slopes.append(dy / ((half[j].uptime - half[i].uptime) / 3600))
            }
        }
        guard !slopes.isEmpty else { return 0 }
        slopes.sort()
        let m = slopes.count / 2
        return slopes.count % 2 == 1 ? slopes[m] : (slopes[m - 1] + slopes[m]) / 2
    }

    static func table(_ samples: [Sample], rows: Int = 24) -> String {
        var picked: [Sample] = []
        if samples.count <= rows {
            picked = samples
        } else {
            for i in 0..<rows { picked.append(samples[i * (samples.count - 1) / (rows - 1)]) }
        }
        var out = "| uptime | memory (RSS) | anonymous RSS | heap in use | in flight | buffers out | connections | routers | subscribers |\n"
        out += "|-------:|-------------:|--------------:|------------:|----------:|------------:|------------:|--------:|------------:|\n"
        for s in picked {
            out += "| \(fmtTime(s.uptime)) | \(String(format: "%.1f MiB", Double(s.rssKiB) / 1024)) | "
                + "\(String(format: "%.1f MiB", Double(s.anonKiB) / 1024)) | "
                + "\(String(format: "%.1f MiB", Double(s.heapKiB) / 1024)) | \(s.inFlight) | "
                + "\(s.buffersOut) | \(s.connections) | \(s.routers) | \(s.subscribers) |\n"
        }
        return out
    }

    static func csv(_ samples: [Sample]) -> String {
        var out = "uptime_s,rss_kib,anon_kib,heap_kib,in_flight,parked,buffers_out,connections,routers,subscribers,commands_ok,failures\n"
        for s in samples {
            out += String(format: "%.1f", s.uptime)
                + ",\(s.rssKiB),\(s.anonKiB),\(s.heapKiB),\(s.inFlight),\(s.parked),\(s.buffersOut),\(s.connections),\(s.routers),\(s.subscribers),\(s.commandsOK),\(s.failures)\n"
        }
        return out
    }

    static func fmtTime(_ seconds: Double) -> String {
        let s = Int(seconds)
        return s >= 3600 ? String(format: "%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60)
            : String(format: "%dm%02ds", s / 60, s % 60)
    }
}

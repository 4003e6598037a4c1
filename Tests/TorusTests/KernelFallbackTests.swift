import CLiburing
import Glibc
import Testing
@testable import Torus
import TorusTestSupport

/// Each kernel fallback, forced on this kernel (which has every feature), carries real
/// traffic: echo round trips over loopback through a `Server` and `AsyncConnection`s
/// on loops configured alike, and every test ends with the ledger quiescent.
@Suite("Kernel feature detection and fallbacks")
struct KernelFallbackTests {
    static func configuration(_ fallbacks: KernelFallbacks) -> EventLoop.Configuration {
        loopConfiguration { $0.fallbacks = fallbacks }
    }

    /// Echo round trips through a server on every loop of `group`, clients spread
    /// over its loops: each byte-exact.
    static func echoThrough(_ group: EventLoopGroup, clients: Int = 40, payloadSize: Int = 64 << 10) async throws {
        let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
        defer { server.close() }
        #expect(try await echoClients(clients, payloadSize: payloadSize, to: server.address, on: group.loops) == clients)
    }

    @Test("the release parses into a version; odd releases do not trap")
    func versionParsing() {
        #expect(KernelVersion(release: "6.18.44-fc-v973") == KernelVersion(6, 18, 44))
        #expect(KernelVersion(release: "5.19.0-50-generic") == KernelVersion(5, 19, 0))
        #expect(KernelVersion(release: "6.1") == KernelVersion(6, 1))
        #expect(KernelVersion(release: "6.1-rc3") == KernelVersion(6, 1))
        #expect(KernelVersion(release: "4.19.12.5") == KernelVersion(4, 19, 12))
        #expect(KernelVersion(release: "") == nil)
        #expect(KernelVersion(release: "linux") == nil)
        #expect(KernelVersion(release: "6") == nil)
        #expect(KernelVersion(release: "99999999999999999999999.1") == nil)
        #expect(KernelVersion(5, 19) < KernelVersion(6, 0))
        #expect(KernelVersion(6, 0, 9) < KernelVersion(6, 1))
        #expect(!(KernelVersion(6, 1) < KernelVersion(6, 1)))
        // The running kernel's release parses (the detection's version checks rely on it).
        #expect(KernelVersion(release: KernelVersion.runningRelease()) != nil)
    }

    @Test("older kernels fall back by version: 5.14 (backports), 5.19, 6.0; an odd release does not")
    func decisionsByVersion() {
        func decide(_ release: String, _ setup: KernelFeatures.SetupFlags = [],
                    _ fallbacks: KernelFallbacks = []) -> KernelFeatures {
            KernelFeatures.decide(release: release, version: KernelVersion(release: release), setup: setup,
                                  fallbacks: fallbacks)
        }
        let rhel = decide("5.14.0-362.el9.x86_64")
        #expect(rhel.accept == .singleShot && rhel.receive == .singleShot, "\(rhel)")
        #expect(rhel.ringDescriptor == .plain)
        #expect(rhel.fallbackReasons.contains("plain ring descriptor: registering it needs 5.18"))
        let old = decide("5.19.0-50-generic", [.coopTaskrun])
        #expect(old.accept == .multishot && old.receive == .singleShot && old.ringDescriptor == .registered)
        #expect(old.fallbackReasons == ["no DEFER_TASKRUN: the kernel refused it (needs 6.1)",
                                        "single-shot receive: multishot needs 6.0"])
        let six = decide("6.0.7", [.singleIssuer, .coopTaskrun])
        #expect(six.accept == .multishot && six.receive == .multishot)
        let new = decide("6.18.44", [.singleIssuer, .deferTaskrun])
        #expect(new.fallbackReasons.isEmpty && new.ringDescriptor == .registered)
        #expect("\(new)" == "kernel 6.18.44: setup SINGLE_ISSUER|DEFER_TASKRUN, multishot accept, "
                + "multishot receive, provided buffer rings, registered ring descriptor, direct socket descriptors")
        #expect(new.socketDescriptors == .direct && rhel.socketDescriptors == .plain)
        #expect(rhel.fallbackReasons.contains("plain socket descriptors: a sparse file table needs 5.19"))
        let odd = decide("custom-kernel", [.singleIssuer, .deferTaskrun])
        #expect(odd.version == nil && odd.accept == .multishot && odd.receive == .multishot)
        let forced = decide("6.18.44", [.singleIssuer, .deferTaskrun],
                            [.singleShotAccept, .singleShotReceive, .unregisteredRingDescriptor])
        #expect(forced.accept == .singleShot && forced.receive == .singleShot && forced.ringDescriptor == .plain)
        #expect(forced.fallbackReasons == ["single-shot accept: configured", "single-shot receive: configured",
                                           "plain ring descriptor: configured"])
    }

    @Test("by default a loop uses what the kernel offers")
    func defaultsFollowTheKernel() async throws {
        try await withLoop { loop in
            let features = loop.kernelFeatures
            #expect(features.release == KernelVersion.runningRelease())
            let version = try #require(features.version)
            #expect(version >= KernelFeatures.minimumKernel)
            #expect(features.accept == .multishot)
            #expect(features.receive == (version >= KernelVersion(6, 0) ? .multishot : .singleShot))
            if version >= KernelVersion(6, 1) {
                #expect(features.setupFlags.isSuperset(of: [.singleIssuer, .deferTaskrun]))
                #expect(features.fallbackReasons.isEmpty, "\(features)")
            }
            #expect(features.setupFlags.rawValue == loop.ring.setupFlags
                    & (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN))
            #expect("\(features)".contains("kernel \(features.release)"))
        }
    }

    /// What liburing will pass to `io_uring_enter` for this loop's ring, read on the loop.
    static func enterTarget(_ loop: EventLoop) async throws -> (registered: Bool, enterFD: Int32, ringFD: Int32) {
        try await loop.run {
            (loop.ring.descriptorRegistered, loop.ring.raw.pointee.enter_ring_fd, loop.ring.raw.pointee.ring_fd)
        }
    }

    @Test("the ring descriptor is registered with each loop thread, so every enter names an index")
    func registeredRingDescriptor() async throws {
        try await withGroup(loops: 2, EventLoop.Configuration()) { group in
            for loop in group.loops {
                #expect(loop.kernelFeatures.ringDescriptor == .registered)
                let target = try await Self.enterTarget(loop)
                #expect(target.registered, "\(loop.kernelFeatures)")
                // The index is the thread's own (the kernel's table per task, from 0),
                // never the ring's descriptor.
                #expect(target.enterFD != target.ringFD && target.enterFD >= 0 && target.enterFD < 16, "\(target)")
            }
            // Each loop's thread registered its own ring: the enters of both succeed.
            try await Self.echoThrough(group)
        }
    }

    @Test("plain ring descriptor: the ring's own descriptor on every enter, echo works")
    func plainRingDescriptor() async throws {
        try await withGroup(loops: 2, Self.configuration(.unregisteredRingDescriptor)) { group in
            for loop in group.loops {
                #expect(loop.kernelFeatures.ringDescriptor == .plain)
                #expect(loop.kernelFeatures.fallbackReasons == ["plain ring descriptor: configured"])
                let target = try await Self.enterTarget(loop)
                #expect(!target.registered && target.enterFD == target.ringFD, "\(target)")
            }
            try await Self.echoThrough(group)
        }
    }

    @Test("plain ring setup: no SINGLE_ISSUER, DEFER_TASKRUN or COOP_TASKRUN, echo works")
    func plainSetup() async throws {
        try await withGroup(loops: 2, Self.configuration(.plainRingSetup)) { group in
            for loop in group.loops {
                #expect(loop.kernelFeatures.setupFlags.isEmpty)
                #expect(loop.ring.setupFlags & (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
                                                | IORING_SETUP_COOP_TASKRUN) == 0)
                #expect(loop.kernelFeatures.fallbackReasons.contains("plain ring setup: configured"))
            }
            try await Self.echoThrough(group)
        }
    }

    @Test("single-shot accept: one accept per connection, re-armed after each")
    func singleShotAccept() async throws {
        let clients = 60
        let ledger = try await withLoop(Self.configuration(.singleShotAccept)) { loop in
            #expect(loop.kernelFeatures.accept == .singleShot)
            #expect(loop.kernelFeatures.receive == .multishot)
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let ok = try await echoClients(clients, payloadSize: 4096, to: server.address, on: [loop])
            #expect(ok == clients)
            let accepts = await loop.ledgerSnapshot()[.accept]
            // A multishot accept would have completed none yet: it is still armed.
            #expect(accepts.completed >= clients, "\(accepts)")
            #expect(accepts.inFlight == 1)
            server.close()
        }
        #expect(ledger[.accept].submitted >= clients + 1)
    }

    @Test("multishot accept (the default): one accept for every connection")
    func multishotAcceptForContrast() async throws {
        try await withLoop { loop in
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let ok = try await echoClients(20, payloadSize: 4096, to: server.address, on: [loop])
            #expect(ok == 20)
            let accepts = await loop.ledgerSnapshot()[.accept]
            #expect(accepts.submitted == 1 && accepts.completed == 0, "\(accepts)")
            server.close()
        }
    }

    @Test("single-shot receive: one recv per buffer, re-armed, with backpressure; byte-exact")
    func singleShotReceive() async throws {
        let clients = 24
        let payload = 512 << 10   // above the write high water mark: reading pauses and resumes
        try await withGroup(loops: 2, Self.configuration(.singleShotReceive)) { group in
            for loop in group.loops {
                #expect(loop.kernelFeatures.receive == .singleShot)
                #expect(loop.kernelFeatures.accept == .multishot)
            }
            let server = try Server.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let ok = try await echoClients(clients, payloadSize: payload, to: server.address, on: [group.loops[1]])
            #expect(ok == clients)
            // Each completion carried at most one 16 KiB buffer: at least that many recvs
            // completed on the server's loop (a multishot would complete about once per
            // connection).
            let recvs = await group.loops[0].ledgerSnapshot()[.recv]
            #expect(recvs.completed >= clients * payload / (16 << 10), "\(recvs)")
            server.close()
        }
    }

    @Test("single-shot receive when the provided ring runs dry (ENOBUFS, re-armed)")
    func singleShotReceiveRunsDry() async throws {
        var configuration = Self.configuration(.singleShotReceive)
        configuration.receiveBufferCount = 16
        try await withGroup(loops: 2, configuration) { group in
            let server = try Server.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let ok = try await echoClients(32, payloadSize: 256 << 10, to: server.address, on: [group.loops[1]])
            #expect(ok == 32)
            server.close()
        }
    }

    @Test("every fallback at once, over TCP and a Unix socket")
    func allFallbacks() async throws {
        try await withGroup(loops: 2, Self.configuration(.all)) { group in
            for loop in group.loops {
                let f = loop.kernelFeatures
                #expect(f.setupFlags.isEmpty && f.accept == .singleShot && f.receive == .singleShot
                        && f.ringDescriptor == .plain && f.socketDescriptors == .plain, "\(f)")
                #expect(loop.directDescriptors == nil)
            }
            let tcp = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            #expect(try await echoClients(50, payloadSize: 100_000, to: tcp.address, on: group.loops) == 50)
            tcp.close()
            let path = "/tmp/torus-kernel-\(getpid()).sock"
            unlink(path)
            let unix = try Server.start(on: [group.loops[0]], address: .unix(path: path)) { _ in Echo() }
            #expect(try await echoClients(10, payloadSize: 100_000, to: unix.address, on: [group.loops[1]]) == 10)
            unix.close()
        }
    }
}

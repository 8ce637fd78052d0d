import ArgumentParser
import Foundation
import LoopbackWebSocket
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization

struct BenchLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Drive a classic Socket.IO chat server with many clients and measure what they receive.",
        discussion: """
            Connects --rooms × --clients-per-room WebSocket clients to the server at --url \
            (chatlog serve --dev, or any server speaking the classic protocol: join-group and \
            send-group-message with acks), joins each to its room, then lets --senders of them \
            (spread over the rooms) send --messages each, at most --window unacknowledged per \
            sender. Every client checks each sender's messages arrive in order, once: a \
            message that never came is lost, one that came twice is duplicated.

            Reports deliveries/s, acked sends/s, send→delivery latency (p50, p99), lost and \
            duplicated deliveries, and the CPU seconds of the generator and (with --server-pid) \
            of the server. The last line is one JSON object. tools/bench-load.sh runs it \
            against chatlog and the reference servers in one run.

            --resume-events N then measures a resume: one client leaves, N messages are sent, \
            and it joins again with `after`; --idle-connections N opens N idle connections and \
            reports the server's memory per connection (needs --server-pid).
            """
    )

    @Option(help: "The server's base URL.") var url = "http://127.0.0.1:3000"
    @Option(help: "Rooms.") var rooms = 1
    @Option(help: "Clients per room (each one WebSocket).") var clientsPerRoom = 100
    @Option(help: "Clients that send (spread over the rooms).") var senders = 10
    @Option(help: "Messages per sender.") var messages = 1_000
    @Option(help: "Unacknowledged sends per sender at most.") var window = 1
    @Option(help: "The server's process id, to report its CPU time and memory.") var serverPid: Int32?
    @Option(help: "Seconds to wait for the last deliveries.") var timeout = 120.0
    @Option(help: "Then measure one client resuming this many messages behind (0: skip).") var resumeEvents = 0
    @Option(help: "Then hold this many idle connections and report the server's memory per connection (0: skip).")
    var idleConnections = 0
    @Option(help: "A name for this run in the JSON line.") var label = "server"
    @Flag(help: ArgumentHelp("Idle connections join no room (to tell the transport's memory from the chat's).", visibility: .hidden))
    var idleWithoutRooms = false
    @Option(help: ArgumentHelp("Rooms the idle connections are spread over.", visibility: .hidden))
    var idleRooms = 100
    @Option(help: """
        Then hold the idle connections this many seconds, answering the server's heartbeats, \
        and fail if the server dropped any of them.
        """)
    var idleHoldSeconds = 0

    func validate() throws {
        guard rooms >= 1, clientsPerRoom >= 1, senders >= 0, senders <= rooms * clientsPerRoom else {
            throw ValidationError("--senders must be at most --rooms × --clients-per-room, and the counts positive")
        }
        guard messages >= 0, (1...256).contains(window) else { throw ValidationError("--window must be 1 to 256") }
        guard parse(url) != nil else { throw ValidationError("--url must be http://HOST:PORT") }
    }

    func parse(_ url: String) -> (host: String, port: Int)? {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst("http://".count).split(separator: "/").first.map(String.init) ?? ""
        let parts = rest.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { return nil }
        return (String(parts[0]), port)
    }

    func run() async throws {
        guard let (host, port) = parse(url) else { throw ExitCode(2) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var result = LoadResult(label: label, rooms: rooms, clients_per_room: clientsPerRoom, senders: senders,
                                messages_per_sender: messages, window: window)
        if messages > 0 && senders > 0 {
            try await runLoad(host: host, port: port, group: group, into: &result)
        }
        if resumeEvents > 0 {
            result.resume_seconds = try await runResume(host: host, port: port, group: group)
            say(String(format: "resume of %d messages behind: %.3f s", resumeEvents, result.resume_seconds ?? 0))
        }
        if idleConnections > 0 {
            result.idle_bytes_per_connection = try await runIdle(host: host, port: port, group: group)
        }
        say(resultLine(result))
        // The event loop thread ends with the process.
    }

    struct LoadResult: Encodable {
        var label: String
        var rooms: Int
        var clients_per_room: Int
        var senders: Int
        var messages_per_sender: Int
        var window: Int
        var deliveries: Int = 0
        var deliveries_per_s: Double = 0
        var acked_sends: Int = 0
        var acked_sends_per_s: Double = 0
        var latency_p50_ms: Double = 0
        var latency_p99_ms: Double = 0
        var lost: Int = 0
        var duplicated: Int = 0
        var generator_cpu_s: Double = 0
        var server_cpu_s: Double?
        var seconds: Double = 0
        var resume_seconds: Double?
        var idle_bytes_per_connection: Double?
    }

    // MARK: The load

    func runLoad(host: String, port: Int, group: MultiThreadedEventLoopGroup, into result: inout LoadResult) async throws {
        let total = rooms * clientsPerRoom
        // Sender k is the (k / rooms)-th client of room k % rooms.
        var senderIndex: [Int: Int] = [:]
        var sendersPerRoom = Array(repeating: 0, count: rooms)
        for k in 0..<senders {
            let room = k % rooms
            senderIndex[room * clientsPerRoom + k / rooms] = k
            sendersPerRoom[room] += 1
        }
        let clock = LoadClock()
        var handlers: [NIOLoopBound<LoadClient>] = []
        var channels: [any Channel] = []
        var joined: [EventLoopFuture<Void>] = []
        var finished: [EventLoopFuture<LoadClient.Stats>] = []
        say("connecting \(total) clients to \(host):\(port)")
        for index in 0..<total {
            let room = index / clientsPerRoom
            let plan = LoadClient.Plan(username: "u\(index)", room: "room-\(room)", sender: senderIndex[index], senders: senders,
                                       messages: messages, window: window, expected: sendersPerRoom[room] * messages)
            let (channel, handler, join, done) = try await LoadClient.connect(host: host, port: port, group: group, plan: plan, clock: clock)
            channels.append(channel)
            handlers.append(handler)
            joined.append(join)
            finished.append(done)
            if index % 100 == 99 { try await EventLoopFuture.andAllSucceed(joined, on: group.next()).get() }
        }
        try await EventLoopFuture.andAllSucceed(joined, on: group.next()).get()
        say("all joined; \(senders) senders × \(messages) messages")

        let serverBefore = serverPid.flatMap(Self.cpuSeconds(pid:))
        let generatorBefore = Self.cpuSeconds(pid: getpid()) ?? 0
        clock.start()
        for handler in handlers { handler.eventLoop.execute { handler.value.start() } }
        let everyone = handlers
        let deadline = group.next().scheduleTask(in: .seconds(Int64(timeout))) {
            for handler in everyone { handler.value.giveUp() }
        }
        var stats: [LoadClient.Stats] = []
        for future in finished { stats.append(try await future.get()) }
        deadline.cancel()
        let generatorAfter = Self.cpuSeconds(pid: getpid()) ?? 0
        let serverAfter = serverPid.flatMap(Self.cpuSeconds(pid:))
        for channel in channels { try? await channel.close() }

        var histogram = LatencyHistogram()
        var lastDelivery: UInt64 = 0
        var lastAck: UInt64 = 0
        for stat in stats {
            result.deliveries += stat.deliveries
            result.acked_sends += stat.acks
            result.lost += stat.lost
            result.duplicated += stat.duplicated
            histogram.merge(stat.latencies)
            lastDelivery = max(lastDelivery, stat.lastDeliveryMicros)
            lastAck = max(lastAck, stat.lastAckMicros)
        }
        let seconds = Double(max(lastDelivery, lastAck)) / 1e6
        result.seconds = seconds
        result.deliveries_per_s = (Double(result.deliveries) / max(Double(lastDelivery) / 1e6, 1e-9)).rounded()
        result.acked_sends_per_s = (Double(result.acked_sends) / max(Double(lastAck) / 1e6, 1e-9)).rounded()
        result.latency_p50_ms = (histogram.percentile(0.50) / 10).rounded() / 100
        result.latency_p99_ms = (histogram.percentile(0.99) / 10).rounded() / 100
        result.generator_cpu_s = ((generatorAfter - generatorBefore) * 100).rounded() / 100
        if let serverBefore, let serverAfter { result.server_cpu_s = ((serverAfter - serverBefore) * 100).rounded() / 100 }
        say(String(format: "%@: %d deliveries (%.0f/s), %d acked sends (%.0f/s), latency p50 %.2f ms p99 %.2f ms, lost %d, duplicated %d, CPU server %@ s, generator %.2f s",
                     label, result.deliveries, result.deliveries_per_s, result.acked_sends, result.acked_sends_per_s,
                     result.latency_p50_ms, result.latency_p99_ms, result.lost, result.duplicated,
                     result.server_cpu_s.map { String(format: "%.2f", $0) } ?? "?", result.generator_cpu_s))
    }

    // MARK: Resume

    /// One client joins, leaves, misses `resumeEvents` messages, and joins again with `after`:
    /// seconds from its join to its last replayed message.
    func runResume(host: String, port: Int, group: MultiThreadedEventLoopGroup) async throws -> Double {
        let clock = LoadClock()
        clock.start()
        let room = "resume-\(UInt32.random(in: 0...UInt32.max))"
        let readerPlan = LoadClient.Plan(username: "resumer", room: room, sender: nil, senders: 1, messages: 0, window: 1, expected: 0)
        let (first, firstHandler, firstJoined, _) = try await LoadClient.connect(host: host, port: port, group: group,
                                                                                plan: readerPlan, clock: clock)
        try await firstJoined.get()
        let lastID = try await firstHandler.eventLoop.submit { firstHandler.value.lastID }.get()
        try? await first.close()
        let batch = 200
        let writerPlan = LoadClient.Plan(username: "writer", room: room, sender: 0, senders: 1, messages: resumeEvents,
                                         window: batch, expected: resumeEvents)
        let (writer, writerHandler, writerJoined, writerDone) = try await LoadClient.connect(host: host, port: port, group: group,
                                                                                           plan: writerPlan, clock: clock)
        try await writerJoined.get()
        writerHandler.eventLoop.execute { writerHandler.value.start() }
        _ = try await writerDone.get()
        try? await writer.close()
        var resumePlan = readerPlan
        resumePlan.after = lastID
        resumePlan.senders = 1
        resumePlan.expected = resumeEvents
        let started = ContinuousClock.now
        let (again, handler, joinedAgain, done) = try await LoadClient.connect(host: host, port: port, group: group, plan: resumePlan, clock: clock)
        try await joinedAgain.get()
        handler.eventLoop.execute { handler.value.start() }
        let stats = try await done.get()
        let elapsed = ContinuousClock.now - started
        try? await again.close()
        guard stats.deliveries == resumeEvents, stats.lost == 0, stats.duplicated == 0 else {
            throw ValidationError("resume received \(stats.deliveries) of \(resumeEvents) (lost \(stats.lost), duplicated \(stats.duplicated))")
        }
        return elapsed.inSeconds
    }

    // MARK: Idle connections

    func runIdle(host: String, port: Int, group: MultiThreadedEventLoopGroup) async throws -> Double {
        guard let serverPid, let before = Self.residentBytes(pid: serverPid) else {
            throw ValidationError("--idle-connections needs --server-pid to read the server's memory")
        }
        let clock = LoadClock()
        clock.start()
        var channels: [any Channel] = []
        var joined: [EventLoopFuture<Void>] = []
        // Which connections failed, and where, when one does: a bare "I/O on closed channel"
        // says neither (the server closed it: its log says why, e.g. a limit or a timeout).
        func joins(upTo last: Int) async throws {
            do {
                try await EventLoopFuture.andAllSucceed(joined, on: group.next()).get()
            } catch {
                for channel in channels { try? await channel.close() }
                throw LoadFailure("an idle connection among numbers \(last - joined.count + 1)–\(last) (of \(idleConnections)) failed "
                                      + "before it \(idleWithoutRooms ? "connected" : "joined its room"): \(error)")
            }
            joined = []
        }
        for index in 0..<idleConnections {
            let plan = LoadClient.Plan(username: "idle\(index)", room: idleWithoutRooms ? "" : "idle-\(index % max(1, idleRooms))", sender: nil, senders: 0, messages: 0,
                                       window: 1, expected: 0)
            do {
                let (channel, _, join, _) = try await LoadClient.connect(host: host, port: port, group: group, plan: plan, clock: clock)
                channels.append(channel)
                joined.append(join)
            } catch {
                for channel in channels { try? await channel.close() }
                throw LoadFailure("idle connection \(index + 1) of \(idleConnections) could not connect: \(error)")
            }
            if index % 200 == 199 { try await joins(upTo: index + 1) }
        }
        try await joins(upTo: idleConnections)
        try await Task.sleep(for: .seconds(1))
        let after = Self.residentBytes(pid: serverPid) ?? before
        let perConnection = Double(max(0, after - before)) / Double(idleConnections)
        say(String(format: "%d idle connections (%@): server memory %.1f → %.1f MB, %.1f KB per connection",
                     idleConnections, idleWithoutRooms ? "connected, in no room" : "each joined to a room", Double(before) / 1e6,
                     Double(after) / 1e6, perConnection / 1000))
        if idleHoldSeconds > 0 {
            try await Task.sleep(for: .seconds(idleHoldSeconds))
            // A connection the server dropped (a heartbeat it missed, a limit) is closed here.
            let dropped = channels.filter { !$0.isActive }.count
            say("held \(idleConnections) idle connections \(idleHoldSeconds) s: \(idleConnections - dropped) still connected, \(dropped) dropped")
            guard dropped == 0 else {
                for channel in channels { try? await channel.close() }
                throw LoadFailure("the server dropped \(dropped) of \(idleConnections) idle connections while they were held")
            }
        }
        for channel in channels { try? await channel.close() }
        return perConnection.rounded()
    }

    // MARK: /proc

    /// User and system CPU seconds of a process.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func residentBytes(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
        return kilobytes * 1024
    }
}

/// Microseconds since the load started, shared by every client (one process, one clock).
final class LoadClock: Sendable {
    private let origin = Mutex<NIODeadline?>(nil)

    func start() { origin.withLock { $0 = NIODeadline.now() } }

    var micros: UInt64 {
        guard let origin = origin.withLock({ $0 }) else { return 0 }
        return UInt64(max(0, (NIODeadline.now() - origin).nanoseconds / 1000))
    }
}

/// Latencies in buckets 1/16 of a power of two wide (about 4 %), from 1 µs to an hour.
struct LatencyHistogram: Sendable {
    static let bucketsPerOctave = 16.0
    var counts = [Int](repeating: 0, count: 16 * 32)

    mutating func record(micros: UInt64) {
        let value = Double(max(micros, 1))
        let index = min(counts.count - 1, Int(log2(value) * Self.bucketsPerOctave))
        counts[index] += 1
    }

    mutating func merge(_ other: LatencyHistogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
    }

    /// The value (µs) at quantile `q`: the upper edge of its bucket.
    func percentile(_ q: Double) -> Double {
        let total = counts.reduce(0, +)
        guard total > 0 else { return 0 }
        let rank = Int((Double(total) * q).rounded(.up))
        var seen = 0
        for (index, count) in counts.enumerated() {
            seen += count
            if seen >= rank { return (pow(2, Double(index + 1) / Self.bucketsPerOctave) * 10).rounded() / 10 }
        }
        return 0
    }
}

/// Writes a line to standard output at once (progress lines reach a pipe as they happen).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// A load run that failed (not a usage error: no usage text after it).
struct LoadFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

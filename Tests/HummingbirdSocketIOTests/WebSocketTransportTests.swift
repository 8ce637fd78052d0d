import HummingbirdSocketIO
import Foundation
import NIOCore
import NIOPosix
import Testing

/// chatlog's WebSocket layer (`WebSocketHTTPChannel`, `WebSocketConnection`) on the wire,
/// byte for byte: a raw TCP client writes the upgrade request and hand-built frames, and
/// reads what the server answers. The server is the conformance server's plain echo
/// (`/websocket-echo`), whose largest message is 1,000,000 bytes.
@Suite(.timeLimit(.minutes(1))) struct WebSocketTransportTests {
    let live = SocketIOEndpointTests()

    /// A raw TCP connection to the server.
    struct RawClient {
        var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
        let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
        var received: [UInt8] = []
        var closed = false

        mutating func write(_ bytes: [UInt8]) async throws {
            try await outbound.write(ByteBuffer(bytes: bytes))
        }

        /// Reads until `count` bytes are buffered or the server closes.
        mutating func fill(_ count: Int) async throws {
            while received.count < count, !closed {
                if let buffer = try await inbound.next() { received += buffer.readableBytesView } else { closed = true }
            }
        }

        /// The HTTP response head (through its blank line).
        mutating func responseHead() async throws -> String {
            while true {
                if let end = received.indices.dropLast(3).first(where: { received[$0..<($0 + 4)] == [13, 10, 13, 10] }) {
                    defer { received.removeFirst(end + 4) }
                    return String(decoding: received[..<end], as: UTF8.self)
                }
                guard !closed else { return String(decoding: received, as: UTF8.self) }
                try await fill(received.count + 1)
            }
        }

        /// The next frame from the server (servers do not mask): opcode, fin and payload; nil
        /// when the connection closed first.
        mutating func frame() async throws -> (opcode: UInt8, fin: Bool, payload: [UInt8])? {
            try await fill(2)
            guard received.count >= 2 else { return nil }
            var length = Int(received[1] & 0x7F)
            var header = 2
            if length == 126 {
                try await fill(4)
                length = Int(received[2]) << 8 | Int(received[3])
                header = 4
            } else if length == 127 {
                try await fill(10)
                length = received[2..<10].reduce(0) { $0 << 8 | Int($1) }
                header = 10
            }
            try await fill(header + length)
            guard received.count >= header + length else { return nil }
            defer { received.removeFirst(header + length) }
            return (received[0] & 0x0F, received[0] & 0x80 != 0, Array(received[header..<(header + length)]))
        }

        /// True once the server has closed the TCP connection.
        mutating func isClosed() async throws -> Bool {
            try await fill(Int.max)
            return closed
        }
    }

    /// A client frame, masked unless `masked` is false.
    static func frame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, masked: Bool = true) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            bytes.append(maskBit | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            bytes += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            bytes.append(maskBit | 127)
            bytes += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        guard masked else { return bytes + payload }
        let key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
        return bytes + key + payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
    }

    static func closeCode(_ payload: [UInt8]) -> Int? {
        payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : nil
    }

    static let upgradeRequest = Array("""
        GET /websocket-echo HTTP/1.1\r
        Host: 127.0.0.1\r
        Upgrade: websocket\r
        Connection: Upgrade\r
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
        Sec-WebSocket-Version: 13\r
        \r

        """.utf8)

    /// Connects to the echo, upgrades (checking the 101 and its accept key) and runs `body`.
    func withEcho(_ body: (inout RawClient) async throws -> Void) async throws {
        try await withRawConnection { client in
            try await client.write(Self.upgradeRequest)
            let head = try await client.responseHead()
            #expect(head.hasPrefix("HTTP/1.1 101"))
            // RFC 6455's own example key and accept value.
            #expect(head.lowercased().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="))
            try await body(&client)
        }
    }

    func withRawConnection(_ body: (inout RawClient) async throws -> Void) async throws {
        try await live.withServer { base in
            let port = try #require(base.port)
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel,
                                                                    configuration: .init(isOutboundHalfClosureEnabled: true))
                    }
                }
            try await channel.executeThenClose { inbound, outbound in
                var client = RawClient(inbound: inbound.makeAsyncIterator(), outbound: outbound)
                try await body(&client)
            }
        }
    }

    @Test func pingsAreAnsweredAndFragmentsReassembled() async throws {
        try await withEcho { client in
            try await client.write(Self.frame(0x9, Array("hi".utf8)))
            let pong = try #require(try await client.frame())
            #expect(pong.opcode == 0xA && pong.payload == Array("hi".utf8))
            // A text message in three fragments, with a ping between two of them.
            try await client.write(Self.frame(0x1, Array("hel".utf8), fin: false))
            try await client.write(Self.frame(0x0, Array("lo ".utf8), fin: false))
            try await client.write(Self.frame(0x9, []))
            try await client.write(Self.frame(0x0, Array("wörld".utf8)))
            #expect(try await client.frame()?.opcode == 0xA)
            let echo = try #require(try await client.frame())
            #expect(echo.opcode == 0x1 && echo.fin && echo.payload == Array("hello wörld".utf8))
            // Binary, 70,000 bytes: too long for a 16-bit length, so the 64-bit form.
            let binary = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }
            try await client.write(Self.frame(0x2, binary))
            let binaryEcho = try #require(try await client.frame())
            #expect(binaryEcho.opcode == 0x2 && binaryEcho.payload == binary)
        }
    }

    /// Messages in bursts of every size, some written while the receiver's task is still at
    /// work and some after it stopped (an idle connection has none): each is echoed once, in
    /// order.
    @Test func messagesInBurstsAreEchoedOnceEachInOrder() async throws {
        try await withEcho { client in
            var sent = 0
            var echoed = 0
            for burst in 1...300 {
                var bytes: [UInt8] = []
                for _ in 0..<Int.random(in: 1...16) {
                    bytes += Self.frame(0x1, Array("m\(sent)".utf8))
                    sent += 1
                }
                try await client.write(bytes)
                if burst % 4 == 0 { try await Task.sleep(for: .milliseconds(1)) }
                // Read back now and then, so the echo's queue (1,024) never fills.
                guard burst % 10 == 0 || burst == 300 else { continue }
                while echoed < sent {
                    let echo = try #require(try await client.frame())
                    guard echo.payload == Array("m\(echoed)".utf8) else {
                        Issue.record("echo \(echoed) was \(String(decoding: echo.payload, as: UTF8.self))")
                        return
                    }
                    echoed += 1
                }
            }
            #expect(echoed == sent)
        }
    }

    /// A client that goes away without a close frame (its TCP side shut) is not kept open.
    @Test func aClientThatShutsItsSideIsClosed() async throws {
        try await withEcho { client in
            try await client.write(Self.frame(0x1, Array("bye".utf8)))
            #expect(try await client.frame()?.payload == Array("bye".utf8))
            client.outbound.finish()  // FIN, no close frame
            #expect(try await client.isClosed())
        }
    }

    @Test func aClientCloseIsAnsweredWithItsCode() async throws {
        try await withEcho { client in
            try await client.write(Self.frame(0x8, [0x03, 0xE9]))  // 1001, going away
            let close = try #require(try await client.frame())
            #expect(close.opcode == 0x8 && Self.closeCode(close.payload) == 1001)
            #expect(try await client.isClosed())
        }
    }

    enum Violation: CaseIterable, CustomTestStringConvertible {
        case invalidUTF8, unmasked, continuationFirst, reservedOpcode, frameOverTheLimit

        var testDescription: String { "\(self)" }

        var bytes: [UInt8] {
            switch self {
            case .invalidUTF8: frame(0x1, [0x61, 0xC3, 0x28])
            case .unmasked: frame(0x1, Array("a".utf8), masked: false)
            case .continuationFirst: frame(0x0, Array("a".utf8))
            case .reservedOpcode: frame(0x3, Array("a".utf8))
            // Only the header of a 1,000,001-byte binary frame: refused before its payload.
            case .frameOverTheLimit: Array(frame(0x2, [UInt8](repeating: 7, count: 1_000_001)).prefix(14))
            }
        }

        var code: Int {
            switch self {
            case .invalidUTF8: 1007
            case .unmasked, .continuationFirst, .reservedOpcode: 1002
            case .frameOverTheLimit: 1009
            }
        }
    }

    @Test(arguments: Violation.allCases)
    func protocolViolationsCloseWithTheirCode(_ violation: Violation) async throws {
        try await withEcho { client in
            try await client.write(violation.bytes)
            let close = try #require(try await client.frame())
            #expect(close.opcode == 0x8 && Self.closeCode(close.payload) == violation.code)
            #expect(try await client.isClosed())
        }
    }

    @Test func aMessageOverTheLimitInFragmentsIsRefused() async throws {
        try await withEcho { client in
            let half = [UInt8](repeating: 1, count: 600_000)
            try await client.write(Self.frame(0x2, half, fin: false))
            try await client.write(Self.frame(0x0, half))
            let close = try #require(try await client.frame())
            #expect(close.opcode == 0x8 && Self.closeCode(close.payload) == 1009)
            #expect(try await client.isClosed())
        }
    }

    /// The server closes (here a Socket.IO session ends on a frame that is not Engine.IO):
    /// its close frame starts the closing handshake, which the client's answer finishes; a
    /// client that never answers is cut off after the close timeout (1 s), not held.
    @Test(arguments: [true, false])
    func aServerCloseWaitsForTheClientsAnswerOrTheTimeout(_ answers: Bool) async throws {
        try await withRawConnection { client in
            let request = String(decoding: Self.upgradeRequest, as: UTF8.self)
                .replacingOccurrences(of: "/websocket-echo", with: "/socket.io/?EIO=4&transport=websocket")
            try await client.write(Array(request.utf8))
            #expect(try await client.responseHead().hasPrefix("HTTP/1.1 101"))
            let open = try #require(try await client.frame())
            #expect(open.opcode == 0x1 && open.payload.first == UInt8(ascii: "0"))
            // The server's close (and its 1 s timer) comes after this write, so an unanswered
            // handshake cannot end sooner than 1 s from here, however late this client reads.
            let sent = ContinuousClock.now
            try await client.write(Self.frame(0x1, Array("abc".utf8)))
            let close = try #require(try await client.frame())
            #expect(close.opcode == 0x8 && Self.closeCode(close.payload) == 1000)
            let answered = ContinuousClock.now
            if answers { try await client.write(Self.frame(0x8, [0x03, 0xE8])) }
            #expect(try await client.isClosed())
            if answers {
                let waited = ContinuousClock.now - answered
                #expect(waited < .milliseconds(900), "the answered handshake should end at once, took \(waited)")
            } else {
                let waited = ContinuousClock.now - sent
                #expect(waited >= .milliseconds(950) && waited < .seconds(10), "cut after \(waited)")
            }
        }
    }

    @Test func anUpgradeLaterOnAKeptAliveConnectionIsRedirected() async throws {
        try await withRawConnection { client in
            try await client.write(Array("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
            let first = try await client.responseHead()
            #expect(first.hasPrefix("HTTP/1.1 200"))
            let length = try #require(first.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) })
            try await client.fill(length)
            client.received.removeFirst(length)
            try await client.write(Self.upgradeRequest)
            let second = try await client.responseHead()
            #expect(second.hasPrefix("HTTP/1.1 307"))
            #expect(second.lowercased().contains("location: /websocket-echo"))
        }
    }

    @Test func anUpgradeToAnUnknownPathIsRefused() async throws {
        try await withRawConnection { client in
            let request = String(decoding: Self.upgradeRequest, as: UTF8.self).replacingOccurrences(of: "/websocket-echo", with: "/nowhere")
            try await client.write(Array(request.utf8))
            #expect(try await client.responseHead().hasPrefix("HTTP/1.1 400"))
            #expect(try await client.isClosed())
        }
    }
}

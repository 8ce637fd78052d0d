import NIOCore
import NIOEmbedded
import NIOWebSocket
import SocketIO
import Testing

@testable import HummingbirdSocketIO

@Suite struct EncodedFrameTests {
    /// A frame encoded once for many recipients is byte for byte what NIO's encoder writes.
    @Test(arguments: [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
    func matchesNIOsEncoderAtEveryLengthBoundary(_ length: Int) throws {
        let text = String(repeating: "é", count: length / 2) + String(repeating: "x", count: length % 2)
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        var payload = ByteBufferAllocator().buffer(capacity: length)
        payload.writeString(text)
        try channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: payload)).wait()
        var expected = ByteBufferAllocator().buffer(capacity: length + 10)
        while var part = try channel.readOutbound(as: ByteBuffer.self) { expected.writeBuffer(&part) }
        let frame = EncodedFrame.text(text)
        #expect(frame.bytes == expected)
        #expect(frame.bytes.readableBytes - frame.headerBytes == text.utf8.count)
        _ = try channel.finish()
    }

    /// A packet's frame is that of its type digit joined to its text (the prefix counts in the
    /// length, so lengths just under a header boundary cross it); a binary packet has none.
    @Test(arguments: [0, 124, 125, 126, 65_534, 65_535, 70_000])
    func aPacketsFrameIsItsTypeDigitThenItsText(_ length: Int) throws {
        let text = String(repeating: "x", count: length)
        for packet in [EnginePacket.message(text), EnginePacket(.ping, .text(text))] {
            let frame = try #require(EncodedFrame.packet(packet))
            let joined = EncodedFrame.text(String(UnicodeScalar(packet.type.digit)) + text)
            #expect(frame.bytes == joined.bytes && frame.headerBytes == joined.headerBytes)
        }
        #expect(EncodedFrame.packet(EnginePacket(.message, .binary([1, 2]))) == nil)
    }
}

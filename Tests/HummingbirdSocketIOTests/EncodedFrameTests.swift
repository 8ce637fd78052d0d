import HummingbirdSocketIO
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

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
}

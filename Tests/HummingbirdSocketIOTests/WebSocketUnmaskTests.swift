import NIOCore
import NIOWebSocket
import Testing

@testable import HummingbirdSocketIO

/// A text frame's payload unmasked word by word into its string, against NIO's unmasking.
@Suite struct WebSocketUnmaskTests {
    /// `text`'s bytes masked with `key`, as a client sends them.
    func masked(_ bytes: [UInt8], _ key: WebSocketMaskingKey) -> ByteBuffer {
        var buffer = ByteBuffer(bytes: bytes)
        buffer.webSocketMask(key)
        return buffer
    }

    @Test func everyLengthAndKeyGivesNIOsText() throws {
        let keys: [WebSocketMaskingKey] = [[0, 0, 0, 0], [1, 2, 3, 4], [0xFF, 0x80, 0x7F, 0x01], [0xDE, 0xAD, 0xBE, 0xEF]]
        // Multi-byte characters land across every word boundary as the length grows.
        let alphabet = Array("aé€😀z".utf8)
        for key in keys {
            for length in 0...70 {
                let bytes = (0..<length).map { alphabet[$0 % alphabet.count] }
                // Only whole characters: cut at a character boundary.
                let text = String(decoding: bytes, as: UTF8.self)
                let whole = Array(text.utf8)
                let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: masked(whole, key))
                let expected = String(buffer: frame.unmaskedData)
                #expect(WebSocketConnection.FrameHandler.unmaskedText(frame.data, key: key) == expected)
            }
        }
    }

    @Test func bytesThatAreNotUTF8GiveNil() {
        let key: WebSocketMaskingKey = [9, 8, 7, 6]
        for bad in [[0xFF], [0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0xC3], Array("valid then".utf8) + [0xED, 0xA0, 0x80]] as [[UInt8]] {
            #expect(WebSocketConnection.FrameHandler.unmaskedText(masked(bad, key), key: key) == nil)
        }
    }
}

import NIOCore
import Testing

@testable import Journal

/// The byte layouts FORMAT.md draws, checked against the encoder: the worked examples there
/// are these exact bytes.
@Suite struct FormatTests {
    static func encode(_ records: [String], codecAllowed: Bool = true) -> (BatchHeader, [UInt8]) {
        var framed = ByteBuffer()
        for record in records {
            framed.writeInteger(UInt32(record.utf8.count), endianness: .little)
            framed.writeString(record)
        }
        var scratch: [UInt8] = []
        var output = ByteBuffer()
        let header = BatchCodecIO.encode(
            framed: framed, count: records.count, baseOffset: Offset(5), leaderEpoch: 2,
            firstTimestampMs: 1_795_000_000_000, lastTimestampMs: 1_795_000_000_250,
            scratch: &scratch, into: &output)
        return (header, Array(output.readableBytesView))
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " ")
    }

    @Test func uncompressedBatchMatchesTheWorkedExample() {
        let (header, bytes) = Self.encode(["hi", "hello"])
        #expect(header.codec == .none)
        // The CRC here was computed independently (bitwise CRC-32C in Python) over bytes 8..<71.
        #expect(Self.hex(bytes) == """
            43 48 4c 42 c7 62 31 43 01 00 00 00 02 00 00 00 \
            05 00 00 00 00 00 00 00 02 00 00 00 0f 00 00 00 \
            0f 00 00 00 00 00 00 00 00 5e 56 ee a1 01 00 00 \
            fa 5e 56 ee a1 01 00 00 \
            02 00 00 00 68 69 05 00 00 00 68 65 6c 6c 6f
            """)
        #expect(header.crc == 0x4331_62C7)
    }

    @Test func lz4BatchMatchesTheWorkedExample() {
        let text = "hello hello hello hello hello hello hello hello"
        let (header, bytes) = Self.encode([text, text])
        #expect(header.codec == .lz4)
        #expect(Int(header.payloadLength) < Int(header.uncompressedLength))
        #expect(bytes.count == BatchHeader.size + Int(header.payloadLength))
        // Decoding gives back exactly the framed records.
        let buffer = ByteBuffer(bytes: bytes)
        guard case .success(let parsed) = BatchHeader.peek(from: buffer) else {
            Issue.record("header does not parse")
            return
        }
        #expect(parsed == header)
        #expect(BatchCodecIO.checksum(ofBatchIn: buffer, header: parsed) == header.crc)
        guard case .success(let framed) = BatchCodecIO.decodeRecords(ofBatchIn: buffer, header: parsed) else {
            Issue.record("payload does not decode")
            return
        }
        let records = RecordBatch(header: parsed, position: .zero, framedRecords: framed).records.map { String(buffer: $0.payload) }
        #expect(records == [text, text])
    }

    @Test func indexFileLayout() {
        var index = SegmentIndex(baseOffset: Offset(1000))
        index.append(IndexEntry(offset: Offset(1040), position: FilePosition(65_600)))
        #expect(Self.hex(Array(index.encoded().readableBytesView)) == """
            43 48 4c 49 01 00 00 00 e8 03 00 00 00 00 00 00 28 00 00 00 40 00 01 00
            """)
    }

    @Test func fileNamesAreTwentyDigitBaseOffsets() {
        #expect(JournalFiles.segmentName(Offset(1234)) == "00000000000000001234.log")
        #expect(JournalFiles.indexName(Offset(0)) == "00000000000000000000.index")
        #expect(JournalFiles.baseOffset(ofSegment: "00000000000000001234.log") == Offset(1234))
        #expect(JournalFiles.baseOffset(ofSegment: "1234.log") == nil)
        #expect(JournalFiles.baseOffset(ofSegment: "0000000000000000123x.log") == nil)
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}

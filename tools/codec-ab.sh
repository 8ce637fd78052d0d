#!/usr/bin/env bash
# Compares the Socket.IO codec of an earlier commit with the working tree's, in one process:
# both are compiled side by side as two modules and run in alternating slices, so that both
# meet the same machine (separate processes here differ by up to 2x). Prints, per path, the
# median time per packet of each and the median and quartiles of the slices' ratios.
#
#   tools/codec-ab.sh BASE [PATH...]     # BASE: a commit; PATH: validate decode encode relay build typed
#
# Needs the codec's API as of the commits of issue 4's sixth session or later
# (`SocketPacket.decode/encode`, `JSONValidator.validate`, `encodeEvent`, `readEventArguments`).
set -euo pipefail
base=${1:?usage: tools/codec-ab.sh BASE [validate|decode|encode|relay|build|typed ...]}
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/Sources"/{OldSIO,NewSIO,CByteScan/include,CByteScanOld/include,Runner}

# The working tree's codec as NewSIO; BASE's as OldSIO, its C helpers renamed so both link.
cp "$repo"/Sources/SocketIO/*.swift "$work/Sources/NewSIO/"
cp "$repo"/Sources/CByteScan/include/*.h "$work/Sources/CByteScan/include/"
echo '// Everything is in the header.' > "$work/Sources/CByteScan/empty.c"
mkdir "$work/base"
git -C "$repo" archive "$base" Sources/SocketIO Sources/CByteScan/include | tar -x -C "$work/base"
cp "$work"/base/Sources/SocketIO/*.swift "$work/Sources/OldSIO/"
cp "$work"/base/Sources/CByteScan/include/*.h "$work/Sources/CByteScanOld/include/"
sed -i 's/chatlog_/chatlog_old_/g; s/CHATLOG_BYTESCAN_H/CHATLOG_BYTESCAN_OLD_H/' "$work"/Sources/CByteScanOld/include/*.h
sed -i 's/import CByteScan/import CByteScanOld/; s/chatlog_/chatlog_old_/g' "$work"/Sources/OldSIO/*.swift
echo '// Everything is in the header.' > "$work/Sources/CByteScanOld/empty.c"

cat > "$work/Package.swift" <<'EOF'
// swift-tools-version:6.0
import PackageDescription
let package = Package(name: "codec-ab", targets: [
    .target(name: "CByteScan"), .target(name: "CByteScanOld"),
    .target(name: "NewSIO", dependencies: ["CByteScan"]), .target(name: "OldSIO", dependencies: ["CByteScanOld"]),
    .executableTarget(name: "Runner", dependencies: ["OldSIO", "NewSIO"]),
])
EOF

# The typed path's struct, once per module (as `chatlog bench socketio` has it).
for side in Old New; do
    {
        echo "import ${side}SIO"
        sed -n '/^struct GroupMessage/,$p' "$repo/Sources/chatlog/BenchSocketIO.swift" |
            sed "s/\bGroupMessage\b/GroupMessage$side/g; s/\bJSONReader\b/${side}SIO.JSONReader/g; s/\bJSONOutput\b/${side}SIO.JSONOutput/g; s/\bSocketIOProtocolError\b/${side}SIO.SocketIOProtocolError/g"
    } > "$work/Sources/Runner/Group$side.swift"
done

cat > "$work/Sources/Runner/main.swift" <<'EOF'
import Foundation
import NewSIO
import OldSIO

let sliceCount = 40
let packetsPerSlice = 100_000
let event = #"2["send-group-message",{"group":"design-12","username":"maria.k","id":"c-9f2c1a7e44","created":1795000000123,"message":"Sure, I'll push the fix af"}]"#
let sentence = "Sure, I'll push the fix af"  // the sentence of `bench socketio`'s 150-byte frame

/// Times of the slices, by path and side. (Not top-level variables: those belong to the main
/// actor, and checking that on each access would be measured too.)
struct Slices {
    var times: [String: [Double]] = [:]
    var checksum = 0

    mutating func time(_ name: String, _ body: () throws -> Int) rethrows {
        let start = ContinuousClock.now
        checksum &+= try body()
        let elapsed = ContinuousClock.now - start
        times[name, default: []].append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}

nonisolated func run(_ paths: [String]) throws {
    var slices = Slices()
    func time(_ name: String, _ body: () throws -> Int) rethrows { try slices.time(name, body) }
    let json = Array(event.utf8.dropFirst())
    let oldDecoded = try OldSIO.SocketPacket.decode(event).packet
    let newDecoded = try NewSIO.SocketPacket.decode(event).packet
    let oldValue = OldSIO.SocketPacket(.event, data: oldDecoded.data)
    let newValue = NewSIO.SocketPacket(.event, data: newDecoded.data)
    let oldMessage = GroupMessageOld(group: "design-12", username: "maria.k", id: "c-9f2c1a7e44", created: 1_795_000_000_123, message: sentence)
    let newMessage = GroupMessageNew(group: "design-12", username: "maria.k", id: "c-9f2c1a7e44", created: 1_795_000_000_123, message: sentence)
    let n = packetsPerSlice

    try json.withUnsafeBufferPointer { buffer in
        for _ in 0..<sliceCount {
            for path in paths {
                switch path {
                case "validate":
                    time("old validate") { var c = 0; for _ in 0..<n where (try? OldSIO.JSONValidator.validate(buffer: buffer, utf8Known: true)) != nil { c += 1 }; return c }
                    time("new validate") { var c = 0; for _ in 0..<n where (try? NewSIO.JSONValidator.validate(buffer: buffer, utf8Known: true)) != nil { c += 1 }; return c }
                case "decode":
                    try time("old decode") { var c = 0; for _ in 0..<n { c &+= try OldSIO.SocketPacket.decode(event).attachments }; return c }
                    try time("new decode") { var c = 0; for _ in 0..<n { c &+= try NewSIO.SocketPacket.decode(event).attachments }; return c }
                case "encode":
                    time("old encode") { var c = 0; for _ in 0..<n { c &+= oldDecoded.encode().text.utf8.count }; return c }
                    time("new encode") { var c = 0; for _ in 0..<n { c &+= newDecoded.encode().text.utf8.count }; return c }
                case "relay":
                    try time("old relay") { var c = 0; for _ in 0..<n { c &+= try OldSIO.SocketPacket.decode(event).packet.encode().text.utf8.count }; return c }
                    try time("new relay") { var c = 0; for _ in 0..<n { c &+= try NewSIO.SocketPacket.decode(event).packet.encode().text.utf8.count }; return c }
                case "build":
                    try time("old build") { var c = 0; for _ in 0..<n { c &+= try OldSIO.SocketPacket.decode(oldValue.encode().text).attachments &+ 1 }; return c }
                    try time("new build") { var c = 0; for _ in 0..<n { c &+= try NewSIO.SocketPacket.decode(newValue.encode().text).attachments &+ 1 }; return c }
                case "typed":
                    try time("old typed") {
                        var c = 0
                        for _ in 0..<n {
                            let text = OldSIO.SocketPacket.encodeEvent("send-group-message") { oldMessage.write(&$0) }
                            let read = try OldSIO.SocketPacket.decode(text).packet.readEventArguments { reader throws(OldSIO.SocketIOProtocolError) in
                                guard try reader.nextElement() else { throw .invalidSocketPacket("no message") }
                                return try GroupMessageOld(reading: &reader)
                            }
                            c &+= read.message.utf8.count
                        }
                        return c
                    }
                    try time("new typed") {
                        var c = 0
                        for _ in 0..<n {
                            let text = NewSIO.SocketPacket.encodeEvent("send-group-message") { newMessage.write(&$0) }
                            let read = try NewSIO.SocketPacket.decode(text).packet.readEventArguments { reader throws(NewSIO.SocketIOProtocolError) in
                                guard try reader.nextElement() else { throw .invalidSocketPacket("no message") }
                                return try GroupMessageNew(reading: &reader)
                            }
                            c &+= read.message.utf8.count
                        }
                        return c
                    }
                default:
                    print("unknown path \(path)")
                    exit(2)
                }
            }
        }
    }

    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    print("path       base ns/packet  new ns/packet  base÷new median [quartiles]  (\(sliceCount) slices of \(n) each, \(event.utf8.count + 1)-byte frame)")
    for path in paths {
        guard let old = slices.times["old " + path], let new = slices.times["new " + path] else { continue }
        let ratios = zip(old, new).map { $0 / $1 }.sorted()
        print(path.padding(toLength: 10, withPad: " ", startingAt: 0),
              String(format: "%14.1f %14.1f  %.3f [%.3f–%.3f]", median(old) / Double(n) * 1e9, median(new) / Double(n) * 1e9,
                     ratios[ratios.count / 2], ratios[ratios.count / 4], ratios[ratios.count * 3 / 4]))
    }
    print("checksum \(slices.checksum)")
}

try run(CommandLine.arguments.count > 1 ? Array(CommandLine.arguments.dropFirst())
        : ["validate", "decode", "encode", "relay", "build", "typed"])
EOF

(cd "$work" && swift build -c release 2>&1 | grep -E "error|warning: [^']" >&2 || true)
"$work/.build/release/Runner" "$@"

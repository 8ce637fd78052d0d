import NIOCore
import Testing
@testable import ChatModel

@Suite struct UserRefMapTests {
    @Test func behavesAsADictionaryThroughGrowthAndCollisions() {
        var map = UserRefMap<Int>()
        var reference: [RoomState.UserRef: Int] = [:]
        var generator = SystemRandomNumberGenerator()
        // Keys spread widely and keys in a dense run (the real case), with repeats.
        let keys = (0..<3_000).map { _ in UInt32.random(in: 0..<100_000, using: &generator) } + Array(0..<2_000)
        for (step, key) in keys.enumerated() {
            let ref = RoomState.UserRef(key)
            if step % 3 == 0 {
                map.updateValue(step, forKey: ref)
                reference[ref] = step
            } else {
                let added = map.modify(ref, default: { -1 }) { value -> Int in
                    value += 1
                    return value
                }
                reference[ref, default: -1] += 1
                #expect(added == reference[ref])
            }
        }
        #expect(map.count == reference.count)
        for (key, value) in reference { #expect(map[key] == value) }
        #expect(map[RoomState.UserRef(200_000)] == nil)
        #expect(Dictionary(uniqueKeysWithValues: map.map { ($0.key, $0.value) }) == reference)
    }

    @Test func equalityIgnoresInsertionOrder() {
        var forward = UserRefMap<String>()
        var backward = UserRefMap<String>()
        for key in 0..<20 { forward.updateValue("v\(key)", forKey: RoomState.UserRef(UInt32(key))) }
        for key in (0..<20).reversed() { backward.updateValue("v\(key)", forKey: RoomState.UserRef(UInt32(key))) }
        #expect(forward == backward)
        backward.updateValue("changed", forKey: RoomState.UserRef(3))
        #expect(forward != backward)
        #expect(UserRefMap<String>() == UserRefMap<String>())
    }
}

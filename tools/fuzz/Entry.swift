// libFuzzer's entry point for tools/fuzz.sh: every input goes through FuzzHarness, and a
// broken property stops the fuzzer with the input saved as a crash file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let failure = FuzzHarness.check(Array(UnsafeBufferPointer(start: data, count: size))) {
        fatalError("property broken: \(failure)")
    }
    return 0
}

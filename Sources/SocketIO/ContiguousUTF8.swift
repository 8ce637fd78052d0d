extension String {
    /// Calls `body` with the string's UTF-8 bytes without copying the string first (which
    /// `withUTF8` needs, being mutating: a copy costs a retain and a release on each call).
    /// Native strings are contiguous; others are made so once.
    @inlinable @inline(__always)
    func withContiguousUTF8<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let result = utf8.withContiguousStorageIfAvailable(body) { return result }
        var copy = self
        copy.makeContiguousUTF8()
        return copy.withUTF8(body)
    }
}

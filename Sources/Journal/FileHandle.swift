#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// An open file descriptor with positional I/O; closes itself when the last reference goes.
///
/// Thread-safe for `pread`: readers share one descriptor with the writer, which only appends
/// past the committed size they read up to. Every failure is a `JournalError.io` naming the
/// operation and the path.
final class FileHandle: Sendable {
    let descriptor: Int32
    let path: String

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        _ = Glibc.close(descriptor)
    }

    static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws(JournalError) -> FileHandle {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        return FileHandle(descriptor: fd, path: path)
    }

    func size() throws(JournalError) -> Int64 {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .io(operation: "fstat", path: path, errno: errno) }
        return Int64(info.st_size)
    }

    /// Reads up to `count` bytes at `position`, appending them to `buffer`.
    /// - Returns: bytes read; fewer than `count` only at the end of the file.
    @discardableResult
    func read(into buffer: inout ByteBuffer, at position: FilePosition, count: Int) throws(JournalError) -> Int {
        var total = 0
        var failure: Int32 = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { destination in
            guard let base = destination.baseAddress else { return 0 }
            while total < count {
                let n = pread(descriptor, base + total, count - total, off_t(position.value) + off_t(total))
                if n > 0 {
                    total += n
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    failure = errno
                    break
                }
            }
            return total
        }
        if failure != 0 { throw .io(operation: "pread", path: path, errno: failure) }
        return total
    }

    /// Writes all readable bytes of `buffer` at `position`.
    func write(_ buffer: ByteBuffer, at position: FilePosition) throws(JournalError) {
        var failure: Int32 = 0
        buffer.withUnsafeReadableBytes { source in
            guard let base = source.baseAddress else { return }
            var written = 0
            while written < source.count {
                let n = pwrite(descriptor, base + written, source.count - written, off_t(position.value) + off_t(written))
                if n >= 0 {
                    written += n
                } else if errno != EINTR {
                    failure = errno
                    return
                }
            }
        }
        if failure != 0 { throw .io(operation: "pwrite", path: path, errno: failure) }
    }

    func sync() throws(JournalError) {
        guard fdatasync(descriptor) == 0 else { throw .io(operation: "fdatasync", path: path, errno: errno) }
    }

    func truncate(to size: FilePosition) throws(JournalError) {
        guard ftruncate(descriptor, off_t(size.value)) == 0 else {
            throw .io(operation: "ftruncate", path: path, errno: errno)
        }
    }
}

/// Directory and path helpers for the crash-safety recipes.
enum FileSystem {
    /// fsyncs a directory so that creations, renames and deletions in it are durable.
    static func syncDirectory(_ path: String) throws(JournalError) {
        let handle = try FileHandle.open(path, flags: O_RDONLY | O_DIRECTORY)
        guard fsync(handle.descriptor) == 0 else { throw .io(operation: "fsync directory", path: path, errno: errno) }
    }

    /// Writes `bytes` to `path` atomically: temp file (created anew with `mode`), fsync,
    /// rename, fsync the directory.
    static func writeAtomically(_ bytes: ByteBuffer, to path: String, directory: String, mode: mode_t = 0o644) throws(JournalError) {
        let temporary = path + ".tmp"
        try remove(temporary)  // a leftover would keep its own permissions
        do throws(JournalError) {
            let handle = try FileHandle.open(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
            try handle.write(bytes, at: .zero)
            guard fsync(handle.descriptor) == 0 else { throw .io(operation: "fsync", path: temporary, errno: errno) }
            guard rename(temporary, path) == 0 else { throw .io(operation: "rename", path: temporary, errno: errno) }
        } catch {
            // A full disk fails the write after the file was made: leave nothing behind.
            unlink(temporary)
            throw error
        }
        try syncDirectory(directory)
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Creates `path` and, as `mkdir -p` does, the directories above it that are missing
    /// (`serve --journal data/journal` on a fresh clone, where `data/` is not there yet).
    static func makeDirectory(_ path: String) throws(JournalError) {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        let parent = trimmed.lastIndex(of: "/").map { String(trimmed[..<$0]) } ?? ""
        guard errno == ENOENT, !parent.isEmpty, parent != trimmed else {
            throw .io(operation: "mkdir", path: path, errno: errno)
        }
        try makeDirectory(parent)
        if mkdir(path, 0o755) != 0, errno != EEXIST {
            throw .io(operation: "mkdir", path: path, errno: errno)
        }
    }

    static func remove(_ path: String) throws(JournalError) {
        if unlink(path) != 0, errno != ENOENT {
            throw .io(operation: "unlink", path: path, errno: errno)
        }
    }

    /// The names of the entries of a directory, unsorted.
    static func list(_ path: String) throws(JournalError) -> [String] {
        guard let dir = opendir(path) else { throw .io(operation: "opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func readAll(_ path: String) throws(JournalError) -> ByteBuffer {
        let handle = try FileHandle.open(path, flags: O_RDONLY)
        let size = try handle.size()
        var buffer = ByteBufferAllocator().buffer(capacity: Int(size))
        try handle.read(into: &buffer, at: .zero, count: Int(size))
        return buffer
    }
}

/// The "new file" crash-safety recipe, for derived files kept beside a journal (snapshots).
public enum AtomicFile {
    /// Replaces `path` with `bytes`: writes `path.tmp`, fsyncs it, renames it over `path`,
    /// fsyncs the directory. After a crash `path` holds either the old or the new bytes.
    /// `mode`: the new file's permissions (0600 for a secret).
    /// - Throws: `JournalError.io` naming the step that failed.
    public static func write(_ bytes: ByteBuffer, to path: String, mode: mode_t = 0o644) throws(JournalError) {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        try FileSystem.writeAtomically(bytes, to: path, directory: directory.isEmpty ? "." : directory, mode: mode)
    }

    /// The bytes of `path`, or nil when it does not exist.
    public static func read(_ path: String) throws(JournalError) -> ByteBuffer? {
        guard FileSystem.exists(path) else { return nil }
        return try FileSystem.readAll(path)
    }
}

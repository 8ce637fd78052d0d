#if canImport(Glibc)
import Glibc
#endif
import CSQLiteTuning
import GRDB

/// What History's and Search's SQLite files share: how they are opened, and how their
/// write-ahead logs are bounded and emptied.
enum ProjectionDatabase {
    /// How large a projection's write-ahead log may grow while a server follows the journal
    /// before `boundWriteAheadLog` checkpoints and truncates it. Without it, the log grew to
    /// about 40 MB (the autocheckpoint, tuned for rebuilds) and kept its size: on a small disk it
    /// filled the space the journal needed.
    static let writeAheadLogBytesMax = 8 << 20

    /// The configuration of a projection's database: WAL, `synchronous = NORMAL` (derived data: a
    /// power cut may lose the last transactions, never consistency, and the checkpoint rolls back
    /// with them), `secure_delete` (a deleted message's text must be gone from the file, not left
    /// in a free page), a page cache of `cacheMiB`, and fewer, larger checkpoints during a
    /// catch-up (about 40 MB of WAL between them; a live server checkpoints sooner).
    static func configuration(cacheMiB: Int) -> Configuration {
        _ = sqliteTuned
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA secure_delete = ON")
            try db.execute(sql: "PRAGMA cache_size = -\(cacheMiB * 1024)")
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 10000")
            // A checkpoint that empties the WAL also shrinks its file to this size.
            try db.execute(sql: "PRAGMA journal_size_limit = \(writeAheadLogBytesMax)")
        }
        return configuration
    }

    /// SQLite's process-wide settings, made once, before the first connection a projection
    /// opens (`chatlog_sqlite_disable_memory_statistics`): without memory statistics, an
    /// allocation takes no process-wide mutex. Measured on a 5 M-event rebuild of History and
    /// the search index side by side: the index's thread waited on that mutex about 5,000
    /// times, and spent 7 % more CPU. The result code: 0 (`SQLITE_OK`) when it took effect,
    /// 21 (`SQLITE_MISUSE`) when something opened SQLite first (statistics stay on; nothing
    /// else changes).
    static let sqliteTuned: Int32 = chatlog_sqlite_disable_memory_statistics()

    /// Checkpoints the write-ahead log of the database at `path` and truncates it to zero bytes
    /// once it is larger than `writeAheadLogBytesMax`. Cheap when under the bound (one `stat`).
    static func boundWriteAheadLog(_ database: DatabaseQueue, path: String) throws(ProjectionError) {
        var info = stat()
        guard stat(path + "-wal", &info) == 0, Int(info.st_size) > writeAheadLogBytesMax else { return }
        try truncateWriteAheadLog(database)
    }

    /// Folds the write-ahead log into the database and truncates it: what it held (old pages,
    /// a deleted text among them) is gone from the files.
    static func truncateWriteAheadLog(_ database: DatabaseQueue) throws(ProjectionError) {
        do {
            try database.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            }
        } catch {
            throw .database("checkpointing the write-ahead log: \(error)")
        }
    }

    /// Opens an existing projection database for reading only, beside the process that
    /// maintains it (a running server): SQLite's WAL lets readers and one writer work at once.
    /// - Throws: `ProjectionError.database` when there is no such database or it is of another layout.
    static func openReadingOnly(_ path: String, layout: Int) throws(ProjectionError) -> DatabaseQueue {
        do {
            _ = sqliteTuned
            var configuration = Configuration()
            configuration.readonly = true
            let database = try DatabaseQueue(path: path, configuration: configuration)
            let version = try database.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0 }
            guard version == layout else {
                throw ProjectionError.database("\(path) has layout \(version), not \(layout); the server rebuilds it")
            }
            return database
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .database("opening \(path) for reading: \(error)")
        }
    }
}

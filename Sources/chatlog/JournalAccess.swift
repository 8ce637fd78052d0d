import ArgumentParser
import Foundation
import Journal
import Logging
import Projections

/// Opens a journal for a command that needs its lock, with the error a user can act on.
func openJournal(_ directory: String, logger: Logger, create: Bool = false) throws -> Journal {
    guard create || FileManager.default.fileExists(atPath: directory + "/journal.meta") else {
        throw CommandFailure.cannotRun("no journal at \(directory) (check --journal; `chatlog serve --journal \(directory)` creates one)")
    }
    let result = Result { () throws(JournalError) -> Journal in try Journal.open(directory: directory, logger: logger) }
    if case .failure(.locked(_, let pid)) = result {
        throw CommandFailure.cannotRun(lockedMessage(directory, pid: pid))
    }
    return try result.get()
}

/// The journal is locked by another process: which, and what to do.
func lockedMessage(_ directory: String, pid: Int32?) -> String {
    "the journal \(directory) is in use by process \(pid.map(String.init) ?? "?") (a running server?): stop it first, or use a command that reads beside a running server (journal inspect, export, history, rooms)"
}

/// Runs `body` with the journal open, closing it afterwards whatever happens.
func withJournal<T>(_ directory: String, logger: Logger, create: Bool = false, _ body: (Journal) async throws -> T) async throws -> T {
    let journal = try openJournal(directory, logger: logger, create: create)
    do {
        let result = try await body(journal)
        await journal.close()
        return result
    } catch {
        await journal.close()
        throw error
    }
}

/// Whether a process (a running server) holds the journal's lock, and its pid.
func journalHolder(_ directory: String) -> Int32?? {
    JournalDirectory.lockHolder(directory: directory)
}

/// Every committed batch from `offset` on, read without the lock (beside a running server).
///
/// The last segment may end in a batch the server is writing at this moment: the walk stops
/// there quietly. Damage anywhere else is an error.
func forEachBatch(in directory: String, from offset: Offset, _ visit: (RecordBatch) throws -> Void) throws {
    let segments = try JournalDirectory.segments(in: directory)
    for (index, segment) in segments.enumerated() {
        if index + 1 < segments.count, segments[index + 1].baseOffset <= offset { continue }
        let isLast = index + 1 == segments.count
        try JournalDirectory.walk(segment) { step in
            switch step {
            case .problem(let problem):
                guard isLast else { throw CommandFailure.refused("the journal is damaged: \(problem) (chatlog journal verify says more)") }
            case .batch(let batch):
                if batch.nextOffset > offset { try visit(batch) }
            }
        }
    }
}

/// Runs `body` with the journal open and the given projections caught up with it.
func withProjections<T>(
    _ directory: String,
    kinds: Set<ProjectionKind>,
    logger: Logger,
    create: Bool = false,
    _ body: (Journal, ProjectionRunner) async throws -> T
) async throws -> T {
    try await withJournal(directory, logger: logger, create: create) { journal in
        let runner = try ProjectionRunner(journal: journal, paths: ProjectionPaths(journalDirectory: directory),
                                          kinds: kinds, logger: logger)
        try runner.catchUp()
        return try await body(journal, runner)
    }
}

import ArgumentParser
import AsyncHTTPClient
import Foundation
import Journal
import NIOCore
import NIOPosix
import NIOSSL
import Replication

/// Why a command stopped short: one line on standard error, `chatlog COMMAND: message`, and an
/// exit code a script can tell apart (docs/operations.md, "Exit codes"):
///
/// - 1 `refused`: the command ran and the answer is no: damage found, a server or etcd
///   refused the request, nothing by that name.
/// - 2 `cannotRun`: it could not do its work: the journal is missing or in use, a server or
///   etcd cannot be reached, the port is taken, a file cannot be read.
/// - 64: the command line itself is wrong (ArgumentParser's usage error, printed with the
///   usage); `ValidationError` is kept for that alone.
struct CommandFailure: Error, CustomStringConvertible {
    enum Kind: Int32 {
        case refused = 1
        case cannotRun = 2
    }

    let kind: Kind
    let message: String

    static func refused(_ message: String) -> CommandFailure { CommandFailure(kind: .refused, message: message) }
    static func cannotRun(_ message: String) -> CommandFailure { CommandFailure(kind: .cannotRun, message: message) }

    var description: String { message }
}

extension Chatlog {
    /// Parses and runs a command; a `CommandFailure` ends it with its line and exit code,
    /// anything else as ArgumentParser ends it.
    static func run(_ arguments: [String]) async -> Never {
        var command: ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            let name = (commandPath(to: type(of: command)) ?? ["chatlog"]).joined(separator: " ")
            printError("\(name): \(failure.message)")
            Foundation.exit(failure.kind.rawValue)
        } catch {
            exit(withError: error)
        }
        Foundation.exit(0)
    }

    /// The names leading from `chatlog` to `target` (`["chatlog", "journal", "verify"]`).
    static func commandPath(to target: ParsableCommand.Type, from root: ParsableCommand.Type = Chatlog.self) -> [String]? {
        if root == target { return [root._commandName] }
        for child in root.configuration.subcommands {
            if let path = commandPath(to: target, from: child) { return [root._commandName] + path }
        }
        return nil
    }
}

/// What went wrong reaching `url`, for a person: the cause in words and what to check, rather
/// than a NIO or HTTP client error's dump.
func unreachable(_ url: String, _ error: Error) -> CommandFailure {
    .cannotRun("cannot reach \(url): \(connectionProblem(error))")
}

/// The cause of a failed request to another process (a node, etcd), in words.
func connectionProblem(_ error: Error) -> String {
    if let io = error as? IOError {
        switch io.errnoCode {
        case ECONNREFUSED: return "connection refused (is the server running, on that port?)"
        case ECONNRESET, EPIPE: return "the connection was reset (is it a chatlog server, and http versus https right?)"
        case ETIMEDOUT: return "no answer within the connection timeout (is the host up?)"
        case EHOSTUNREACH, ENETUNREACH: return "no route to the host (is the address right?)"
        default: return String(cString: strerror(io.errnoCode))
        }
    }
    if error is SocketAddressError { return "unknown host (check the name in the URL)" }
    if let connection = error as? NIOConnectionError {
        if connection.dnsAError != nil || connection.dnsAAAAError != nil {
            return "unknown host \(connection.host) (check the name in the URL)"
        }
        if let first = connection.connectionErrors.first { return connectionProblem(first.error) }
    }
    if let client = error as? HTTPClientError {
        switch client {
        case .connectTimeout: return "no connection within the timeout (is the host up, the port open?)"
        case .deadlineExceeded, .readTimeout: return "no answer within the timeout (is the server paused or overloaded?)"
        case .remoteConnectionClosed: return "the server closed the connection before answering"
        case .invalidURL, .emptyHost, .emptyScheme: return "not a valid http or https URL"
        default: return "\(client)"
        }
    }
    if error is NIOSSLError || error is BoringSSLError {
        return "TLS failed: \(error) (is the certificate's authority in --tls-ca-file, and the URL's host in the certificate?)"
    }
    return "\(error)"
}

extension CommandFailure {
    /// A journal that cannot be opened or changed: in use or unreadable (2), or refusing (1).
    init(_ error: JournalError) {
        switch error {
        case .locked(let directory, let pid): self = .cannotRun(lockedMessage(directory, pid: pid))
        case .io: self = .cannotRun("\(error)")
        default: self = .refused("\(error)")
        }
    }

    /// A request to a running node (`replication status`, `promote`) that failed: the node
    /// could not be reached (2), or it answered with an error (1), said in its own words with
    /// what to do where the cause is a usual mistake.
    /// - Parameter secretHint: what to do about `unauthorized` (which secret the request carried).
    init(server: String, _ error: Error, secretHint: String = "use the replication secret file the server was started with") {
        switch error {
        case ReplicationError.answered(let url, let status, let code, let message):
            var line = "\(url) answered \(status) \(code): \(message)"
            switch code {
            case "not_standby": line += " (give the URL of one of its standbys: `chatlog replication status` on the leader lists them)"
            case "unauthorized", "forbidden": line += " (\(secretHint))"
            case "not_leader": line += " (give the leader's URL: `chatlog replication status` on this node names it)"
            default: break
            }
            self = .refused(line)
        case ReplicationError.refused(let status, let code, let message, _):
            self.init(server: server, ReplicationError.answered(url: server, status: status, code: code, message: message),
                      secretHint: secretHint)
        case ReplicationError.secret(let why):
            self = .cannotRun(why)
        case ReplicationError.badResponse(let why):
            self = .refused("\(server) did not answer as a chatlog server does: \(why)")
        default:
            self = unreachable(server, error)
        }
    }
}

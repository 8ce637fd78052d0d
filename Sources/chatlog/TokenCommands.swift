import ArgumentParser
import AsyncHTTPClient
import ChatModel
import ChatServer
import Foundation
import Journal
import Logging
import NIOCore
import Replication

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Issue the tokens clients connect with, and revoke them.",
        subcommands: [Issue.self, Revoke.self]
    )

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "issue",
            abstract: "Print a token for a username (an HS256 JWT: sub = the username, exp = now + ttl).",
            discussion: """
                Reads the server's secret (DIR/auth.secret with --journal, or --secret-file) and \
                takes no lock, so it works while the server runs. A client connects with \
                io(url, {auth: {token}}).

                Examples:
                  chatlog token issue alice --journal data/journal
                  chatlog token issue bot --ttl 30d --secret-file /etc/chatlog/secret
                """
        )

        @Argument(help: "The username the token speaks for.") var username: String
        @Option(help: ArgumentHelp("How long the token is valid: N followed by s, m, h or d.", valueName: "ttl"))
        var ttl: String = "24h"
        @Option(help: ArgumentHelp("The journal directory whose auth.secret signs the token.", valueName: "dir"))
        var journal: String?
        @Option(help: ArgumentHelp("The secret file (instead of --journal).", valueName: "file"))
        var secretFile: String?

        func validate() throws {
            guard (journal == nil) != (secretFile == nil) else { throw ValidationError("give --journal or --secret-file, one of them") }
            guard UserID(username) != nil else { throw ValidationError("a username is 1 to \(UserID.maxBytes) bytes of NFC text without control characters") }
            guard Self.parse(ttl: ttl) != nil else { throw ValidationError("--ttl is a number followed by s, m, h or d, such as 24h") }
        }

        static func parse(ttl: String) -> Duration? {
            ttl.hasSuffix("ms") ? nil : parseDuration(ttl)
        }

        func run() async throws {
            let path = secretFile ?? ((journal ?? "") + "/auth.secret")
            guard let user = UserID(username), let duration = Self.parse(ttl: ttl) else { throw ExitCode(2) }
            do {
                let (secret, _) = try AuthSecret.load(path: path, create: false)
                let identity = await Identity.tokens(secret: secret)
                print(try await identity.issue(user, ttl: duration))
            } catch let error as ChatServerError {
                throw CommandFailure.cannotRun("\(error): a server generates it when it first starts without --dev (a --dev server checks no tokens and writes no secret), or give --secret-file")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke",
            abstract: "Refuse every token of a user issued until now, on every node.",
            discussion: """
                Journals a revocation: from then on each node (standbys copy it; restarts keep \
                it) refuses that user's tokens issued before it (their whole second included) at \
                connection and on the HTTP API, and closes the connections made with them. Tokens \
                issued afterwards (chatlog token issue, a second later) work. A token without \
                `iat` (issued at) is refused once its user has a revocation.

                With --server, a running leader journals it (POST /api/admin/revoke-tokens with \
                an operator's token made from the server's secret, valid 60 s); without it, the \
                journal of a stopped server gets it directly.

                Examples:
                  chatlog token revoke alice --journal /var/lib/chatlog/journal --server http://127.0.0.1:3000
                  chatlog token revoke alice --secret-file /etc/chatlog/secret --server https://chat.example.com
                  chatlog token revoke alice --journal data/journal      # the server is stopped
                """
        )

        @Argument(help: "The username whose tokens are refused.") var username: String
        @Option(help: ArgumentHelp("The journal directory: its auth.secret signs the operator's token; without --server, the revocation is appended to it (the server must be stopped).", valueName: "dir"))
        var journal: String?
        @Option(help: ArgumentHelp("The secret file (instead of --journal, with --server).", valueName: "file"))
        var secretFile: String?
        @Option(help: ArgumentHelp("A running leader's base URL.", valueName: "url")) var server: String?
        @Option(name: .customLong("tls-ca-file"), help: ArgumentHelp("PEM certificate authorities to check an https server against (default: the system's).", valueName: "file"))
        var tlsCAFile: String?
        @OptionGroup var logging: LoggingOptions

        func validate() throws {
            guard (journal == nil) != (secretFile == nil) else { throw ValidationError("give --journal or --secret-file, one of them") }
            if server == nil && journal == nil { throw ValidationError("without --server, give --journal (a stopped server's journal)") }
            guard UserID(username) != nil else { throw ValidationError("a username is 1 to \(UserID.maxBytes) bytes of NFC text without control characters") }
        }

        func run() async throws {
            guard let user = UserID(username) else { throw ExitCode(64) }
            let logger = logging.makeLogger(label: "chatlog.token")
            guard let server else {
                try await revokeInJournal(user, logger: logger)
                return
            }
            let path = secretFile ?? ((journal ?? "") + "/auth.secret")
            let token: String
            do {
                let (secret, _) = try AuthSecret.load(path: path, create: false)
                token = try await Identity.tokens(secret: secret).issueOperator()
            } catch let error as ChatServerError {
                throw CommandFailure.cannotRun("\(error): give the journal of a server started without --dev, or --secret-file")
            }
            let url = (server.hasSuffix("/") ? String(server.dropLast()) : server) + "/api/admin/revoke-tokens"
            let client = ReplicationProtocol.makeClient(trustRootsFile: tlsCAFile)
            let secretHint = "give the journal or --secret-file of that server: its secret signs the operator's token"
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                request.headers.add(name: "Authorization", value: "Bearer " + token)
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: jsonLine(["username": user.value])))
                let response = try await client.execute(request, timeout: .seconds(30))
                let body = try await response.body.collect(upTo: 1 << 16)
                try await client.shutdown()
                guard response.status == .ok, let answer = try? JSONDecoder().decode(Answer.self, from: Data(body.readableBytesView)) else {
                    throw CommandFailure(server: server, ReplicationError(url: url, status: response.status.code, body: body),
                                         secretHint: secretHint)
                }
                print("revoked \(user)'s tokens issued before \(answer.revoked_before) (journal offset \(answer.offset)); every node refuses them")
            } catch let failure as CommandFailure {
                throw failure
            } catch {
                try? await client.shutdown()
                throw CommandFailure(server: server, error)
            }
        }

        struct Answer: Decodable {
            var revoked_before: String
            var offset: UInt64
        }

        /// Appends the revocation to a stopped server's journal.
        private func revokeInJournal(_ user: UserID, logger: Logger) async throws {
            guard let directory = journal else { throw ExitCode(64) }
            let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
            guard case .accepted(let events) = RoomState().decide(.revokeTokens, by: user, at: nowMs) else {
                preconditionFailure("a revocation is always accepted")
            }
            let offset = try await withJournal(directory, logger: logger) { journal in
                try await journal.append(contentsOf: events.map(ChatEventCodec.encode)).last
            }
            let before = events.first.map { event -> Int64 in
                if case .tokensRevoked(let ms) = event.body { return ms }
                return nowMs
            } ?? nowMs
            print("revoked \(user)'s tokens issued before \(Identity.iso(before)) (journal offset \(offset.value)); every node refuses them once it has it")
        }
    }
}

import ArgumentParser
import Foundation
import HummingbirdSocketIO
import Hummingbird
import Logging

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Tools for developing chatlog.",
        subcommands: [SocketIOConformance.self]
    )

    struct SocketIOConformance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "socketio-conformance",
            abstract: "Run the server the official Socket.IO and Engine.IO test suites expect.",
            discussion: """
                Socket.IO at /socket.io/ (pingInterval 300 ms, pingTimeout 200 ms, maxPayload \
                1000000, connectTimeout 1 s, namespaces / and /custom; it emits "auth" with the \
                CONNECT payload, answers "message" with "message-back" and acknowledges \
                "message-with-ack"), a bare Engine.IO echo server at /engine.io/, and a plain \
                WebSocket echo at /websocket-echo. Prints "listening on HOST:PORT" once bound \
                (--port 0 picks a free port). See docs/protocol.md for running the official suites \
                against it (tools/official-suites/run.sh).
                """
        )

        @Option(help: "Address to bind.") var host = "127.0.0.1"
        @Option(help: "Port to bind (0: any free port).") var port = 3000
        @OptionGroup var logging: LoggingOptions

        func run() async throws {
            let logger = logging.makeLogger(label: "chatlog.conformance")
            let host = self.host
            let app = ConformanceServer.application(host: host, port: port, logger: logger) { port in
                FileHandle.standardOutput.write(Data("listening on \(host):\(port)\n".utf8))
            }
            try await app.runService()
        }
    }
}

import Foundation
import Hummingbird
import Logging
import NIOCore
import SocketIO

/// The web chat page (`GET /`): static files in the package (`Web/`, SwiftPM resources), no
/// build step, no framework; and the official Socket.IO browser client at
/// `/socket.io/socket.io.js` and `/socket.io/socket.io.min.js`, where the reference server
/// serves it, so a page that loads its client from there works unchanged.
///
/// The client is not committed: tools/ensure-deps.sh takes it from a pinned PyPI wheel into
/// `Web/vendor/` (git-ignored) before the build copies the resources. Without it the script
/// URLs answer 404 with a line of JavaScript that says how to install it, and the page says so.
/// The files are read once, at start (about 80 KB). Immutable after init; thread-safe.
struct WebPage: Sendable {
    struct File: Sendable {
        let bytes: ByteBuffer
        let contentType: String
    }

    /// By URL path.
    let files: [String: File]
    let client: File?

    static let clientInstallHint = "the Socket.IO browser client is not installed: run tools/ensure-deps.sh (or make run), then rebuild"

    /// Reads the page's files from the package's resources; logs what is missing.
    static func load(logger: Logger) -> WebPage {
        guard let root = Bundle.module.resourceURL?.appendingPathComponent("Web") else {
            logger.warning("web page files not found; GET / answers 404")
            return WebPage(files: [:], client: nil)
        }
        func read(_ name: String, _ contentType: String) -> File? {
            guard let data = try? Data(contentsOf: root.appendingPathComponent(name)) else { return nil }
            return File(bytes: ByteBuffer(bytes: data), contentType: contentType)
        }
        var files: [String: File] = [:]
        for (path, name, type) in [("/", "index.html", "text/html; charset=utf-8"),
                                   ("/web/app.js", "app.js", "text/javascript; charset=utf-8"),
                                   ("/web/app.css", "app.css", "text/css; charset=utf-8")] {
            if let file = read(name, type) { files[path] = file } else {
                logger.warning("web page file missing", metadata: ["web.file": "\(root.path)/\(name)"])
            }
        }
        let client = read("vendor/socket.io.min.js", "text/javascript; charset=utf-8")
        if client == nil { logger.warning("\(clientInstallHint)") }
        return WebPage(files: files, client: client)
    }

    /// The page's routes. `/web/config.json` tells the page how to sign in (`dev`: a username,
    /// else a token, pasted or brought back from `loginURL`) and whether the server offers
    /// connection state recovery.
    func addRoutes(to router: Router<BasicRequestContext>, dev: Bool, recovery: Bool, loginURL: String? = nil) {
        for (path, file) in files {
            router.get(RouterPath(path)) { _, _ in Self.response(file) }
        }
        for path in ["/socket.io/socket.io.js", "/socket.io/socket.io.min.js"] {
            router.get(RouterPath(path)) { [client] _, _ in
                guard let client else {
                    let body = "console.error(\(JSONValue.string("chatlog: " + Self.clientInstallHint).serialized()));\n"
                    return Response(status: .notFound, headers: [.contentType: "text/javascript; charset=utf-8"],
                                    body: .init(byteBuffer: ByteBuffer(string: body)))
                }
                return Self.response(client, cache: "public, max-age=3600")
            }
        }
        var settings: [(String, JSONValue)] = [("auth", .string(dev ? "dev" : "token")), ("recovery", .bool(recovery))]
        if let loginURL, !dev { settings.append(("login_url", .string(loginURL))) }
        let config = JSONValue.object(settings).serialized()
        router.get("/web/config.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                     body: .init(byteBuffer: ByteBuffer(string: config)))
        }
    }

    /// A file with the headers every page file gets: no sniffing, no framing, and a content
    /// security policy that allows only this origin's scripts, styles and sockets (so even a
    /// message that slipped past escaping could not load or run anything).
    static func response(_ file: File, cache: String = "no-cache") -> Response {
        Response(status: .ok, headers: [
            .contentType: file.contentType,
            .cacheControl: cache,
            .xContentTypeOptions: "nosniff",
            .contentSecurityPolicy: "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
        ], body: .init(byteBuffer: file.bytes))
    }
}

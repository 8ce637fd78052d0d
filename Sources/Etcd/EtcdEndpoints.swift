import Foundation

/// The etcd members a client may talk to, from `--etcd http://HOST:PORT[,http://HOST:PORT…]`.
public struct EtcdEndpoints: Sendable, Equatable, CustomStringConvertible {
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var secure: Bool

        public var description: String {
            "\(secure ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        }
    }

    /// At most this many members: etcd clusters have 3, 5 or 7.
    public static let countMax = 9

    public let all: [Endpoint]

    public var description: String { all.map(\.description).joined(separator: ",") }

    /// Parses a comma-separated list of `http://HOST:PORT` (or `https://`) URLs; a URL without a
    /// port gets etcd's client port, 2379.
    /// - Throws: `EtcdError.badEndpoint` naming what is wrong.
    public init(_ list: String) throws(EtcdError) {
        var all: [Endpoint] = []
        for item in list.split(separator: ",", omittingEmptySubsequences: false) {
            let text = item.trimmingCharacters(in: .whitespaces)
            all.append(try Self.parse(text))
        }
        guard !all.isEmpty, all.count <= Self.countMax else {
            throw .badEndpoint("\(list): give 1 to \(Self.countMax) etcd URLs, separated by commas")
        }
        self.all = all
    }

    static func parse(_ text: String) throws(EtcdError) -> Endpoint {
        let secure: Bool
        let rest: Substring
        if text.hasPrefix("http://") {
            (secure, rest) = (false, text.dropFirst("http://".count))
        } else if text.hasPrefix("https://") {
            (secure, rest) = (true, text.dropFirst("https://".count))
        } else {
            throw .badEndpoint("\(text.isEmpty ? "an empty URL" : text): an etcd URL starts with http:// or https://")
        }
        let authority = rest.hasSuffix("/") ? rest.dropLast() : rest
        guard !authority.isEmpty, !authority.contains("/"), !authority.contains("@") else {
            throw .badEndpoint("\(text): expected http://HOST:PORT")
        }
        let host: Substring
        var port = 2379
        if authority.hasPrefix("[") {
            // [IPv6]:port
            guard let close = authority.firstIndex(of: "]") else { throw .badEndpoint("\(text): unclosed [") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let number = Int(after.dropFirst()) else { throw .badEndpoint("\(text): bad port") }
                port = number
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let number = Int(authority[authority.index(after: colon)...]) else { throw .badEndpoint("\(text): bad port") }
            port = number
        } else {
            host = authority
        }
        guard !host.isEmpty, (1...65535).contains(port) else { throw .badEndpoint("\(text): expected http://HOST:PORT") }
        return Endpoint(host: String(host), port: port, secure: secure)
    }
}

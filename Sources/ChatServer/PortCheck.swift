#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore

/// Whether the listening address is free, checked before anything is opened, so that a port
/// already taken ends the start with one line naming it, rather than a bind error after the
/// journal was opened and closed again.
enum PortCheck {
    /// Binds a socket to `host`:`port` as the listener will (`SO_REUSEADDR`, so a port whose
    /// last connections linger in TIME_WAIT counts as free) and closes it. Port 0 (any free
    /// port) is never taken.
    static func requireFree(host: String, port: Int) throws(ChatServerError) {
        guard port != 0 else { return }
        let address: SocketAddress
        do {
            address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch {
            throw .startup("cannot listen on \(host): no such address (\(error)); give --host an address of this machine, such as 127.0.0.1 or 0.0.0.0")
        }
        let family = address.protocol.rawValue
        #if canImport(Glibc)
        let descriptor = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let descriptor = socket(family, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { return }  // no socket to try with: the listener will say
        defer { close(descriptor) }
        var one: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = address.withSockAddr { pointer, size in bind(descriptor, pointer, socklen_t(size)) }
        guard result != 0 else { return }
        throw refusal(errno: errno, host: host, port: port)
    }

    /// A failed bind in words, with what to do.
    static func refusal(errno code: Int32, host: String, port: Int) -> ChatServerError {
        switch code {
        case EADDRINUSE:
            .startup("port \(port) on \(host) is in use by another process: stop it, or choose another --port")
        case EACCES:
            .startup("port \(port) needs privileges to listen on (ports below 1024): choose one above 1023, or give the process CAP_NET_BIND_SERVICE")
        case EADDRNOTAVAIL:
            .startup("\(host) is not an address of this machine: give --host one of its addresses, such as 127.0.0.1 or 0.0.0.0")
        default:
            .startup("cannot listen on \(host):\(port): \(String(cString: strerror(code)))")
        }
    }
}

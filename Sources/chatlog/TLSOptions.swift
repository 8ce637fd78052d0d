import ArgumentParser
import ChatServer

/// `chatlog serve`'s HTTPS options: the server's certificate and key, and the authorities its
/// peers' `https` URLs are checked against.
struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("Serve HTTPS (clients, standbys, the API) with this PEM certificate chain; needs --tls-key.", valueName: "file"))
    var certificate: String?
    @Option(name: .customLong("tls-key"), help: ArgumentHelp("The PEM private key of --tls-cert.", valueName: "file"))
    var key: String?
    @Option(name: .customLong("tls-ca-file"), help: ArgumentHelp("PEM certificate authorities to check https leaders and peers against (default: the system's).", valueName: "file"))
    var caFile: String?

    func validate() throws {
        guard (certificate == nil) == (key == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    func apply(to configuration: inout ChatServerConfiguration) {
        configuration.tlsCertificateFile = certificate
        configuration.tlsKeyFile = key
        configuration.tlsCAFile = caFile
    }
}

import Configuration
import Foundation
import SystemPackage

/// Where `chatlog serve`'s settings come from besides its flags (apple/swift-configuration):
/// `CHATLOG_*` environment variables and a JSON file (`--config FILE` or `CHATLOG_CONFIG`),
/// in that order of precedence, flags above both. Each setting has the flag's long name: the
/// file's key `advertise-url`, the variable `CHATLOG_ADVERTISE_URL`, the flag `--advertise-url`.
///
/// The settings found for flags not given are added to the command line before it is parsed,
/// so they are checked exactly as flags are (and a bad one is named by its flag).
enum ServeSettings {
    /// A setting: its flag's long name and what it takes.
    struct Setting {
        enum Kind { case value, flag, list }
        let name: String
        let kind: Kind
    }

    /// Every setting of `serve` (the test `test_every_serve_option_can_come_from_a_file_or_the_environment`
    /// checks this list against `serve`'s options).
    static let settings: [Setting] = [
        .init(name: "journal", kind: .value), .init(name: "host", kind: .value), .init(name: "port", kind: .value),
        .init(name: "dev", kind: .flag), .init(name: "auth-secret-file", kind: .value), .init(name: "durability", kind: .value),
        .init(name: "segment-bytes", kind: .value), .init(name: "retention-bytes", kind: .value),
        .init(name: "snapshot-interval", kind: .value), .init(name: "web-login-url", kind: .value),
        .init(name: "cors-origin", kind: .list), .init(name: "recovery", kind: .flag),
        .init(name: "events-per-second", kind: .value), .init(name: "events-burst", kind: .value),
        .init(name: "connections-max", kind: .value), .init(name: "anonymous-sessions-max", kind: .value),
        .init(name: "anonymous-sessions-per-address", kind: .value), .init(name: "trust-forwarded-for", kind: .flag),
        .init(name: "replication-secret-file", kind: .value), .init(name: "standby-of", kind: .value),
        .init(name: "standby-name", kind: .value), .init(name: "read-only", kind: .flag),
        .init(name: "sync-replicas", kind: .value), .init(name: "sync-timeout", kind: .value),
        .init(name: "forward-timeout", kind: .value), .init(name: "tcp-connections-max", kind: .value),
        .init(name: "http-idle-timeout", kind: .value), .init(name: "event-loops", kind: .value), .init(name: "tls-cert", kind: .value), .init(name: "tls-key", kind: .value),
        .init(name: "tls-ca-file", kind: .value), .init(name: "etcd", kind: .value), .init(name: "cluster", kind: .value),
        .init(name: "node", kind: .value), .init(name: "advertise-url", kind: .value), .init(name: "lease-ttl", kind: .value),
        .init(name: "replica-lag-timeout", kind: .value), .init(name: "log-level", kind: .value),
    ]

    /// The environment variable of a setting.
    static func variable(_ name: String) -> String {
        "CHATLOG_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `arguments` (after `serve`) with the settings from the environment and the file added
    /// for every flag they do not give.
    static func merge(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> [String] {
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(environmentVariables: environment.filter { $0.key.hasPrefix("CHATLOG_") })
                .prefixKeys(with: ConfigKey(["chatlog"])),
        ]
        if let path = configPath(arguments) ?? environment["CHATLOG_CONFIG"] {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw Failure(description: "the configuration file \(path) cannot be read")
            }
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(path)))
            } catch {
                throw Failure(description: "the configuration file \(path) is not a JSON object of settings: \(error)")
            }
        }
        let reader = ConfigReader(providers: providers)
        var merged = arguments
        for setting in settings where !given(setting.name, in: arguments) {
            // One component: the file's key as written; CHATLOG_ and the name in capitals with
            // underscores for the environment (the prefix above).
            let key = ConfigKey([setting.name])
            switch setting.kind {
            case .flag:
                if let text = reader.string(forKey: key) {
                    guard let on = parseBool(text) else {
                        throw Failure(description: "\(setting.name) (\(variable(setting.name)) or the file) is true or false, got \(text)")
                    }
                    if on { merged.append("--\(setting.name)") }
                } else if reader.bool(forKey: key) == true {
                    merged.append("--\(setting.name)")
                }
            case .list:
                for value in reader.stringArray(forKey: key) ?? reader.string(forKey: key).map({ [$0] }) ?? [] {
                    merged += ["--\(setting.name)", value]
                }
            case .value:
                if let value = reader.string(forKey: key) ?? reader.int(forKey: key).map(String.init)
                    ?? reader.double(forKey: key).map({ String($0) }) {
                    merged += ["--\(setting.name)", value]
                }
            }
        }
        return merged
    }

    /// Whether the command line gives `--name` (as `--name value` or `--name=value`).
    static func given(_ name: String, in arguments: [String]) -> Bool {
        arguments.contains { $0 == "--\(name)" || $0.hasPrefix("--\(name)=") }
    }

    /// The `--config` file on the command line.
    static func configPath(_ arguments: [String]) -> String? {
        for (index, argument) in arguments.enumerated() {
            if argument.hasPrefix("--config=") { return String(argument.dropFirst("--config=".count)) }
            if argument == "--config", index + 1 < arguments.count { return arguments[index + 1] }
        }
        return nil
    }

    static func parseBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "1", "true", "yes", "on": true
        case "0", "false", "no", "off": false
        default: nil
        }
    }
}

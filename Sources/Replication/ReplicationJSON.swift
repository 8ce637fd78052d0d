import Foundation

/// The JSON of an error answer (FORMAT.md §11).
struct ErrorBody: Codable {
    struct Detail: Codable {
        var code: String
        var message: String
        /// With `diverged`: where the standby's journal must be cut back to.
        var truncateTo: UInt64?
    }

    var error: Detail
}

/// The answer to a fence request.
struct FenceAnswer: Codable {
    var fenced: Bool
    var epoch: UInt32
}

/// JSON as the HTTP API writes it: snake_case keys.
public enum ReplicationJSON {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}

import Foundation

/// A one-line progress bar on standard error, drawn only when standard error is a terminal:
/// percent, events per second and time left. Not thread-safe; owned by one command.
struct ProgressBar {
    let total: UInt64
    let unit: String
    let start = ContinuousClock.now
    private var lastDraw = ContinuousClock.now
    private let enabled = isatty(STDERR_FILENO) == 1

    init(total: UInt64, unit: String = "events") {
        self.total = total
        self.unit = unit
    }

    mutating func update(_ done: UInt64) {
        guard enabled, lastDraw.duration(to: .now) >= .milliseconds(100) || done >= total else { return }
        lastDraw = .now
        let fraction = total == 0 ? 1 : min(1, Double(done) / Double(total))
        let elapsed = start.duration(to: .now).inSeconds
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let left = rate > 0 ? Double(total - min(done, total)) / rate : 0
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "\r[%@] %5.1f%%  %llu/%llu %@  %.0f %@/s  ETA %.0fs ",
                          bar, fraction * 100, done, total, unit, rate, unit, left)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

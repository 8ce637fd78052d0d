import Journal
import SocketIO
import Testing
@testable import ChatServer

@Suite struct ISO8601Tests {
    @Test func readsJavaScriptToISOStringAndOffsets() {
        #expect(ISO8601.milliseconds("1970-01-01T00:00:00.000Z") == 0)
        #expect(ISO8601.milliseconds("2021-07-14T05:55:56.868Z") == 1_626_242_156_868)
        #expect(ISO8601.milliseconds("2021-07-14T07:55:56.868+02:00") == 1_626_242_156_868)
        #expect(ISO8601.milliseconds("2021-07-14T05:55:56Z") == 1_626_242_156_000)
        #expect(ISO8601.milliseconds("2021-07-14T05:55:56.8Z") == 1_626_242_156_800)
        #expect(ISO8601.milliseconds("2021-07-14T05:55:56.86899Z") == 1_626_242_156_868)
        #expect(ISO8601.milliseconds("2000-02-29T12:00:00.000Z") == 951_825_600_000)
    }

    @Test func refusesWhatIsNotATime() {
        for text in ["", "yesterday", "2021-13-14T05:55:56.868Z", "2021-07-14T05:55:56.Z", "2021-07-14T05:55:56.868",
                     "2021-07-14T05:55:56.868Zjunk", "2021-07-14T25:55:56.868Z", "2021-07-14T05:55:56.868+0200"] {
            #expect(ISO8601.milliseconds(text) == nil, "\(text)")
        }
    }
}

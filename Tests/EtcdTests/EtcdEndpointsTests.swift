import Etcd
import Logging
import Testing

struct EtcdEndpointsTests {
    @Test func aListOfURLsParses() throws {
        let endpoints = try EtcdEndpoints("http://10.0.0.1:2379, http://etcd-2:12379,https://[::1]:2380,http://etcd-3/")
        #expect(endpoints.all.map(\.description) == ["http://10.0.0.1:2379", "http://etcd-2:12379", "https://[::1]:2380", "http://etcd-3:2379"])
        #expect(endpoints.all[2].secure && endpoints.all[2].host == "::1")
    }

    @Test(arguments: ["", "etcd:2379", "ftp://etcd:2379", "http://", "http://etcd:0", "http://etcd:port", "http://etcd:2379/v3",
                      "http://user@etcd:2379", "http://a:1,", "http://[::1:2379"])
    func aBadURLIsRefusedWithAReason(_ list: String) {
        #expect(throws: EtcdError.self) { try EtcdEndpoints(list) }
    }

    @Test func tooManyMembersAreRefused() {
        let list = (1...10).map { "http://etcd-\($0):2379" }.joined(separator: ",")
        #expect(throws: EtcdError.self) { try EtcdEndpoints(list) }
    }

    /// https endpoints get a TLS transport (a TLS etcd is exercised end to end by
    /// tools/tests/test_tls.py, with certificates the test makes).
    @Test func httpsEndpointsAreAcceptedAndAnUnreadableAuthorityFileIsAnError() throws {
        let client = try EtcdClient(endpoints: EtcdEndpoints("https://127.0.0.1:2379,http://127.0.0.1:2380"),
                                    logger: Logger(label: "etcd-test"))
        #expect(client.endpoints.map(\.secure) == [true, false])
        client.close()
        #expect(throws: EtcdError.self) {
            try EtcdClient(endpoints: EtcdEndpoints("https://127.0.0.1:2379"), trustRootsFile: "/nonexistent/ca.pem",
                           logger: Logger(label: "etcd-test"))
        }
    }
}

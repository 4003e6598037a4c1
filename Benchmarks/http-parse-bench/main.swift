import Glibc
import TorusHTTP

// Per-request CPU cost of the HTTP/1.1 request parser (scan + head validation), with no
// network and no server: each corpus item is parsed again and again by one warm parser
// (storage reserved once, as a server connection's parser is), and the thread's CPU time
// (CLOCK_THREAD_CPUTIME_ID, so other load on the machine barely matters) is divided by
// the number of requests. Prints ns/request and requests/s per item, the median of
// --runs runs. With --only NAME --iterations N it parses one item N times and prints
// nothing else: the mode for `valgrind --tool=callgrind` instruction counts.
//
//   swift run -c release http-parse-bench [--runs R] [--requests N] [--only NAME] [--iterations N]
//
// Instructions per request (callgrind: Ir of --iterations 20000 minus --iterations 0,
// divided by the requests parsed), before and after the one-pass head reading
// (issue 12, 2026-12-03):
//
//   item         scan + validate   one pass
//   plaintext              2,903      1,726
//   browser                7,799      4,120
//   pipelined16            2,833      1,670

/// One corpus item: bytes as received in one read, holding `requests` requests.
struct Item {
    var name: String
    var bytes: [UInt8]
    var requests: Int
}

/// What wrk sends for `wrk -H 'Accept: …' -H 'Connection: keep-alive' http://127.0.0.1:8080/plaintext`
/// (`../shared/bench/http.sh`).
let wrkPlaintext = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    + "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7\r\n"
    + "Connection: keep-alive\r\n\r\n"

/// A browser navigation: 12 fields, cookies, a query string.
let browser = "GET /static/app/index.html?lang=en&v=20240101 HTTP/1.1\r\n"
    + "Host: www.example.com\r\n"
    + "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    + "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    + "Accept-Language: en-US,en;q=0.5\r\n"
    + "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    + "Referer: https://www.example.com/static/app/\r\n"
    + "Connection: keep-alive\r\n"
    + "Cookie: session=4f9c2a7d1e8b3c6a5d0f; theme=dark; consent=analytics%3Dno%26ads%3Dno\r\n"
    + "Upgrade-Insecure-Requests: 1\r\n"
    + "Sec-Fetch-Dest: document\r\n"
    + "Sec-Fetch-Mode: navigate\r\n"
    + "If-None-Match: \"5d8c72a5edda8d6a\"\r\n\r\n"

let corpus = [
    Item(name: "plaintext", bytes: Array(wrkPlaintext.utf8), requests: 1),
    Item(name: "browser", bytes: Array(browser.utf8), requests: 1),
    Item(name: "pipelined16", bytes: Array(String(repeating: wrkPlaintext, count: 16).utf8), requests: 16),
]

var runs = 7
var targetRequests = 2_000_000
var only: String?
var iterations: Int?
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--runs": runs = Int(args.next() ?? "") ?? runs
    case "--requests": targetRequests = Int(args.next() ?? "") ?? targetRequests
    case "--only": only = args.next()
    case "--iterations": iterations = Int(args.next() ?? "")
    case "--help":
        print("http-parse-bench [--runs R] [--requests N] [--only plaintext|browser|pipelined16] [--iterations N]")
        exit(0)
    default:
        print("unknown argument \(a)")
        exit(2)
    }
}

func threadCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Parses `item` `times` times with `parser`; returns the number of heads seen, checked
/// by the caller (heads whose path is empty are not counted, so the path is read).
@inline(never)
func parse(_ item: Item, times: Int, with parser: inout HTTPRequestParser) -> Int {
    var heads = 0
    item.bytes.withUnsafeBytes { raw in
        for _ in 0..<times {
            do {
                try parser.parse(raw) { event in
                    if case .head(let head) = event {
                        // What a router reads of every request: method and path.
                        if head.method == .get, head.withPathBytes({ !$0.isEmpty }) { heads += 1 }
                    }
                    return .proceed
                }
            } catch {
                print("\(item.name): unexpected parse error \(error)")
                exit(1)
            }
        }
    }
    return heads
}

if let iterations {
    guard let item = corpus.first(where: { $0.name == only }) else {
        print("--iterations needs --only \(corpus.map(\.name).joined(separator: "|"))")
        exit(2)
    }
    var parser = HTTPRequestParser()
    let heads = parse(item, times: iterations, with: &parser)
    guard heads == iterations * item.requests else { exit(1) }
    exit(0)
}

print("item          bytes/req  ns/request   requests/s  (thread CPU, median of \(runs) runs)")
for item in corpus where only == nil || item.name == only {
    var parser = HTTPRequestParser()
    let times = max(1, targetRequests / item.requests)
    _ = parse(item, times: times / 10, with: &parser)  // warm up: storage reserved, caches hot
    var samples: [Double] = []
    for _ in 0..<runs {
        let t0 = threadCPUNanoseconds()
        let heads = parse(item, times: times, with: &parser)
        let t1 = threadCPUNanoseconds()
        guard heads == times * item.requests else {
            print("\(item.name): \(heads) heads, expected \(times * item.requests)")
            exit(1)
        }
        samples.append(Double(t1 - t0) / Double(heads))
    }
    samples.sort()
    let median = samples[samples.count / 2]
    let name = item.name + String(repeating: " ", count: max(0, 12 - item.name.count))
    let perRequest = item.bytes.count / item.requests
    print("\(name)  \(String(perRequest).leftPad(9))  \(String(format1(median)).leftPad(10))  \(String(Int(1e9 / median)).leftPad(11))")
}

func format1(_ x: Double) -> String {
    let tenths = Int((x * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}

extension String {
    func leftPad(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

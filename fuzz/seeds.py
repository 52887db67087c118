#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ (or DIR/<target>/).

The inputs use the encoding of fuzz/checks/input.rs: a byte string is one length byte below
0xF0, or 0xFx plus one more byte for a 12-bit length, then the bytes; integers are
little-endian. Run from anywhere: `python3 fuzz/seeds.py [DIR]`. The seeds are also kept in
tests/fuzz_corpus/, beside the minimised corpus: they pin down a few exact behaviours (a token
right after `Bearer`, labels with surrounding whitespace) that coverage alone would not keep.
"""

import pathlib
import struct
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
CORPUS = FUZZ / "corpus"


def b(data):
    """A length-prefixed byte string."""
    if isinstance(data, str):
        data = data.encode()
    data = data[:0xFFF]
    if len(data) < 0xF0:
        return bytes([len(data)]) + data
    return bytes([0xF0 | (len(data) >> 8), len(data) & 0xFF]) + data


def u32(n):
    return struct.pack("<I", n)


def u64(n):
    return struct.pack("<Q", n)


def i64(n):
    return struct.pack("<q", n)


def redis_command():
    def request(flags, command, nanos=180_000):
        return bytes([flags]) + u64(nanos) + b(command)

    # The first byte of an input picks the exposition format of its scrape.
    yield b"\x00" + request(0, "get") + request(1, " SET ") + request(0, "ſcan") + request(0, "\u3000zadd\x85")
    yield b"\x01" + request(2, "FOO") + request(3, "  bar\t") + request(2, b"f\xffo") + request(2, "")
    yield b"\x00" + request(2, "ßfoo") + request(2, "a" * 100) + request(2, b" " * 255 + "éx".encode())
    yield b"\x01" + request(2, b"a" * 255 + b"\xc3x") + request(2, b"a" * 256 + b"\xff")
    yield b"\x00" + b"".join(request(2, f"cmd{i}") for i in range(40))
    yield b"\x01" + request(0, "zremrangebyſcore") + request(0, "\x0bget\x0b") + request(2, "other")


def label_admission():
    dynamo = bytes([0, 0, 66, 0]) + bytes([2]) + b("orders") + b(" orders ")
    dynamo += bytes([1]) + b("orders") + i64(3) + i64(5) + i64(-1)
    dynamo += u64(3_000_000) + i64(512) + i64(2)
    part = bytes([1]) + b("orders.fifo") + u32(3) + bytes([0])
    depth = bytes([2]) + b("orders.fifo") + i64(5) + i64(2) + i64(-1)
    forget = bytes([3]) + b("orders.fifo")
    # The first byte of an input picks the exposition format of its scrape.
    yield b"\x00" + dynamo + part + depth + forget
    for kind in range(4):
        yield bytes([kind & 1, 4]) + b(f"burst{kind}-") + bytes([220, kind])
    yield b"\x01" + bytes([4]) + b("q") + bytes([200, 2]) + bytes([4]) + b("q") + bytes([100, 3]) + depth
    yield bytes([0, 5, 1]) + u64(0x3FF0000000000000) + bytes([5, 1]) + u64(0x7FF8000000000000)
    yield bytes([1, 0, 6]) + b("DescribeTable") + bytes([7, 3]) + b("ConditionalChec\u212aFailedException") + bytes([1]) + b("_other") + bytes([0])


def exposition_roundtrip():
    def server(sid, addr, suffrage):
        return b(sid) + b(addr) + bytes([suffrage])

    head = b("n1") + b("10.0.0.1:50051")
    group = bytes([0]) + bytes([2]) + b("a") + b("10.0.0.1:1") + u64(5)
    group += bytes([3]) + server("a", "10.0.0.1:1", 0) + server("b", "10.0.0.2:1", 1) + server("c", "", 0)
    tail = bytes([2]) + b("orders") + i64(5) + i64(2) + i64(1) + b('q"\\\n') + i64(-1) + i64(0) + i64(7)
    tail += bytes([2]) + b("orders") + b(" t\ta\\ble\n ")
    tail += bytes([2]) + b("zscore") + b("")
    yield head + bytes([1]) + group + tail
    yield b('id "quoted" \\ back\nslash') + b("\u00e9\u3000\t\r\x00") + bytes([0, 0, 0, 0])
    nasty = server('x"', "\\", 2) + b("weird\nsuffrage") + server("_other", "_other", 0)
    group2 = bytes([1]) + bytes([0]) + b("") + b("") + u64(0) + bytes([2]) + nasty
    yield head + bytes([1]) + group2 + bytes([0, 0, 0])
    padded = b("  n1 ") + b("\t10.0.0.1:50051\n")
    yield padded + bytes([1]) + bytes([1, 2]) + b(" lead ") + b(" ") + u64(1) + bytes([1]) + server(" a ", " b ", 0)


def http_headers():
    def case(mode, accept, encoding, token, header, suffix=b""):
        out = bytes([mode]) + b(accept) + b(encoding) + b(token) + b(header)
        return out + (b(suffix) if mode & 1 else b"")

    om = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
    yield case(1, om, "gzip, deflate", " s3cret ", "Bearer ")
    yield case(1, "text/plain;version=0.0.4", "x-gzip;q=0", "tok", "  bEaReR \t", " \n")
    yield case(0, 'application/*;q="0.9";escaping=underscores\ntext/*;q=0.8', "*;q=0.1, gzip;q=0", "abc", "Bearer abc")
    yield case(0, "", "", "   ", "")
    yield case(1, "*/*", "identity", "a\u00a0b", "Bearer ")
    yield case(1, "application/openmetrics-text; version=0.0.1", "", "tok", "Basic ")
    yield case(1, "", "", "tok", "Bearer")  # no whitespace after the scheme
    yield case(1, "", "", "tok", "\u00a0Bearer\u3000", "\u2029")


def protobuf_roundtrip():
    # Schema (see read_schema in fuzz/checks/protobuf_roundtrip.rs), length-prefixed.
    def closed(*values):
        return bytes([0, len(values) - 1]) + b"".join(b(v) for v in values)

    def open_(max_, overflow):
        return bytes([1, max_ - 1]) + b(overflow)

    def histogram(kind, bounds, native=None, classic_byte=0):
        # kind: 3 duration, 4 milliseconds, 5 integer; bounds as raw u64s.
        out = b(f"h{kind} \\ \"help\"\n") + bytes([kind, len(bounds)])
        out += b"".join(bytes([2]) + u64(v) for v in bounds)
        if native is None:
            return out + bytes([0])
        schema, zero, cap = native
        out += bytes([1, schema + 4]) + zero + bytes([cap])
        if not bounds:
            out += bytes([classic_byte])
        return out

    def dims(*ds):
        return bytes([len(ds)]) + bytes(ds)

    def schema(consts, domains, families):
        body = bytes([len(consts)]) + b"".join(b(c) for c in consts)
        body += bytes([len(domains) - 1]) + b"".join(domains)
        body += bytes([len(families) - 1]) + b"".join(families)
        return b(body)

    seconds = [1_000_000, 100_000_000, 1_000_000_000, 10_000_000_000]
    # Classic and native durations (schema 3, zero threshold 1e-6) under an open label, values
    # on classic bounds, native boundaries and the zero threshold.
    s1 = schema(
        ["n1", 'a"b\\c\nd'],
        [open_(2, "_other"), closed("get", "")],
        [histogram(3, seconds, (3, bytes([2]), 0)) + dims(0, 1)],
    )
    obs = bytes([0, 1]) + b("orders") + bytes([1, 0, 3]) + bytes([2, 2, 0]) + bytes([4, 8, 0]) + bytes([3, 1]) + bytes([3, 2])
    obs += bytes([0, 0]) + b("\u00e9\x00\u2028") + bytes([0, 0, 1]) + bytes([5, 0])
    obs += bytes([0, 4, 0, 3]) + bytes([0, 8]) + u64(2**64 - 1) + bytes([6, 63]) + bytes([7, 10, 2])
    yield s1 + bytes([0, 3]) + obs
    # Counters, integer and float gauges with NaN, infinities, negative zero and removals.
    s2 = schema(
        ["x"],
        [closed("a", "b", "c")],
        [b("c") + bytes([0]) + dims(0), b("g") + bytes([1]) + dims(0), b("f") + bytes([2]) + dims()],
    )
    obs = bytes([0, 0, 1]) + u64(2**64 - 2) + bytes([0, 0, 1]) + u64(5)
    obs += bytes([1, 1, 2]) + i64(-7) + bytes([1, 2, 3]) + i64(-2**63) + bytes([1, 0, 5])
    obs += bytes([2, 2, 0]) + bytes([2, 4, 1]) + bytes([2, 2, 3]) + bytes([2, 4, 0]) + bytes([2, 2, 4, 1])
    yield s2 + bytes([1, 12]) + obs
    # Native-only integers at schema 8 (lowered to fit the cell cap), a cap of 3 buckets.
    s3 = schema([], [open_(3, "")], [histogram(5, [], (8, bytes([0]), 3), classic_byte=1) + dims(0)])
    obs = b"".join(bytes([0]) + b(f"v{i}") + bytes([0, 3]) + bytes([6, i * 7 % 64]) * 4 for i in range(8))
    obs += bytes([0, 1, 1, 1]) + i64(-5)
    yield s3 + bytes([0, 9]) + obs
    # Milliseconds at schema -4 with a zero threshold of 255 ms, negative i64 and durations.
    s4 = schema(["\xff"], [closed("x")], [histogram(4, [0, 5_000_000], (-4, bytes([3, 255]), 1)) + dims()])
    obs = bytes([0, 1, 1]) + i64(-1) + bytes([0, 2, 2]) + u64(3) + u32(5) + u64(2**63) + u32(999_999_999)
    obs += bytes([0, 0, 3]) + bytes([3, 1]) + bytes([3, 2]) + bytes([4, 255, 1]) + bytes([2, 1, 0])
    yield s4 + bytes([0, 3]) + obs


def manifest():
    yield (FUZZ.parent / "metrics.toml").read_bytes()
    yield b'[registry]\nconst_labels = ["node_id"]\n\n[domain.x]\nlabel = "x"\nvalues = ["a", "b"]\n\n[[family]]\nname = "x_total"\nkind = "counter"\nsubsystem = "X"\nhelp = "X."\nlabels = ["x"]\n'
    yield b'[domain.t]\nlabel = "t"\nmax = 4\noverflow = "_other"\n\n[[family]]\nname = "h_seconds"\nkind = "histogram"\nhelp = "H."\nlabels = ["t"]\nvalue = "duration"\n'


def main():
    corpus = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS
    for name, seeds in [
        ("redis_command", redis_command),
        ("label_admission", label_admission),
        ("exposition_roundtrip", exposition_roundtrip),
        ("http_headers", http_headers),
        ("manifest", manifest),
        ("protobuf_roundtrip", protobuf_roundtrip),
    ]:
        out = corpus / name
        out.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds()):
            (out / f"seed-{i:02}").write_bytes(seed)
        print(f"{name}: {i + 1} seeds in {out}")


if __name__ == "__main__":
    main()

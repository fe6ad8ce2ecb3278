"""A bounded, seeded generator of hostile HTTP requests, and a raw client to send them.

The requests are the kinds attack testing used: search parameters with crafted
names, modifiers, prefixes and values (thousands of OR values, deep chains,
huge numbers, NUL and invalid UTF-8), odd ids and version ids, bodies that are
not JSON, not FHIR, deeply nested or full of control characters, JSON and
FHIRPath patches that try to grow without bound, Bundles of nonsense, odd
conditional headers, and requests that break HTTP itself.  They are sent as
raw bytes over a socket, so nothing on the client side tidies them up.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

TYPES = ["Patient", "Observation", "Encounter", "Condition", "Bundle", "Basic",
         "AuditEvent", "Nope", "patient", ""]
SEARCH_NAMES = [
    "name", "family", "given", "birthdate", "gender", "_id", "identifier", "subject",
    "patient", "code", "value-quantity", "value-string", "date", "_lastUpdated", "_count",
    "_sort", "_include", "_revinclude", "_elements", "_summary", "_total", "_text",
    "_content", "_filter", "_tag", "_profile", "_security", "_list", "_type", "_has",
    "general-practitioner", "link", "organization", "_format", "_pretty", "_since",
    "_cursor", "_offset", "component-code-value-quantity", "bogus", "", "_", "a" * 300,
]
MODIFIERS = ["", "", "", ":exact", ":contains", ":missing", ":not", ":above", ":below",
             ":in", ":not-in", ":text", ":of-type", ":identifier", ":iterate", ":Patient",
             ":bogus", ":", "::"]
PREFIXES = ["", "", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "zz"]
VALUES = [
    "", "x", "Doe", "a|b", "|", "||", "a|b|c", "http://loinc.org|8867-4", "2020",
    "2020-13-45", "2020-02-30T25:61:61Z", "1", "-1", "0", "1e999", "-1e999", "NaN",
    "Infinity", "9" * 400, "0." + "0" * 400 + "1", "5.4|http://unitsofmeasure.org|mg",
    "Patient/1", "Patient/", "/", "..", "../../etc/passwd", "urn:uuid:", "*", "%",
    "'; DROP TABLE resource; --", "\\", "\"", "<script>", "名前", "\U0001F600",
    "a,b,c", "true", "false", "null", "{}", "[]", "$everything", "_history",
]
IDS = ["1", "a", "x" * 64, "x" * 65, "x" * 5000, "..", "%2e%2e", "%00", "a%00b", "%ff",
       "%C0%80", "-", ".", "a.b", "é", "%20", "9" * 30, "$everything", "_history",
       "_search", "123%2F456"]
VERSIONS = ["1", "0", "-1", "9" * 30, "9" * 5000, "x", "1.5", "%00", ""]
WEIRD_HEADERS = {
    "If-Match": ['W/"1"', 'W/"' + "9" * 5000 + '"', '"1"', "*", "W/", 'W/"x"', "", '"-1"'],
    "If-None-Match": ['W/"1"', "*", "garbage", 'W/"' + "9" * 50 + '"'],
    "If-None-Exist": ["identifier=a|b", "name=" + "x" * 3000, "%00", "_id=1&_id=2", "bogus=1",
                      "link.link.link.link.link.name=x"],
    "If-Modified-Since": ["Mon, 99 Foo 2020 00:00:00 GMT", "yesterday", "0"],
    "Prefer": ["return=representation", "return=bogus", "handling=lenient",
               "respond-async", "handling=strict; return=OperationOutcome", ";;;"],
    "Accept": ["application/fhir+json", "application/xml", "*/*", "text/html", "garbage/;;",
               "application/fhir+json; fhirVersion=9.9"],
    "Authorization": ["Bearer x", "Bearer " + "a" * 3000, "Basic Zm9vOmJhcg==", "Bearer"],
    "X-Provenance": ["{}", "not json", '{"resourceType":"Provenance"}'],
}
CONTENT_TYPES = ["application/fhir+json", "application/json", "application/json-patch+json",
                 "application/x-www-form-urlencoded", "text/plain", "application/xml",
                 "application/fhir+json; charset=latin-1", ""]


@dataclass(frozen=True)
class HostileRequest:
    """One request as bytes on the wire; ``kind`` names its category in failure reports."""

    kind: str
    raw: bytes
    method: str = "GET"

    def describe(self) -> str:
        head = self.raw[:300].decode("latin-1")
        return f"[{self.kind}] {head!r}"


@dataclass(frozen=True)
class Nested:
    """Resources contained in each other ``depth`` times, written out as JSON text
    (serializers refuse to build such depths, but a client can still send them)."""

    depth: int

    def json(self) -> str:
        return '{"resourceType":"Patient","contained":[' * self.depth + "{}" + "]}" * self.depth


def _dumps(value: Any) -> bytes:
    """JSON bytes of anything the generator makes, big integers and deep nesting included."""
    if isinstance(value, Nested):
        return value.json().encode()
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class HostileGenerator:
    """Requests of every category, drawn from one seeded random source."""

    def __init__(self, seed: int, host: str, patient_ids: list[str]) -> None:
        self.random = random.Random(seed)
        self.host = host
        self.patient_ids = patient_ids

    def requests(self, count: int) -> list[HostileRequest]:
        makers = [(self.search, 36), (self.read, 14), (self.write, 20), (self.patch, 8),
                  (self.bundle, 10), (self.operation, 6), (self.protocol, 6)]
        functions = [maker for maker, _ in makers]
        weights = [weight for _, weight in makers]
        return [self.random.choices(functions, weights)[0]() for _ in range(count)]

    # -- categories ---------------------------------------------------------------------

    def search(self) -> HostileRequest:
        kind = self.choice(TYPES[:6])
        params = [self.search_param() for _ in range(self.random.randint(0, 4))]
        target = f"/fhir/{kind}?" + "&".join(params)
        if self.random.random() < 0.15:
            return self.build("search", "POST", f"/fhir/{kind}/_search",
                              body="&".join(params).encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        return self.build("search", "GET", target, headers=self.some_headers())

    def read(self) -> HostileRequest:
        kind, id_ = self.choice(TYPES), self.choice(IDS + self.patient_ids)
        target = f"/fhir/{kind}/{id_}"
        roll = self.random.random()
        if roll < 0.3:
            target += f"/_history/{self.choice(VERSIONS)}"
        elif roll < 0.5:
            target += "/_history?" + self.search_param()
        method = self.choice(["GET", "GET", "DELETE", "OPTIONS", "TRACE", "BREW", "HEAD"])
        return self.build("read", method, target, headers=self.some_headers())

    def write(self) -> HostileRequest:
        kind = self.choice(TYPES[:6])
        method = self.choice(["POST", "PUT", "PUT"])
        target = f"/fhir/{kind}" if method == "POST" else \
            f"/fhir/{kind}/{self.choice(IDS + self.patient_ids)}"
        if self.random.random() < 0.2:
            target = f"/fhir/{kind}?" + self.search_param()  # conditional update
        headers = self.some_headers()
        headers["Content-Type"] = self.choice(CONTENT_TYPES[:2] * 4 + CONTENT_TYPES)
        return self.build("write", method, target, body=self.hostile_body(kind),
                          headers=headers)

    def patch(self) -> HostileRequest:
        target = f"/fhir/Patient/{self.choice(self.patient_ids + IDS[:3])}"
        if self.random.random() < 0.5:
            body = _dumps(self.json_patch())
            content_type = "application/json-patch+json"
        else:
            body = _dumps(self.fhirpath_patch())
            content_type = "application/fhir+json"
        headers = {"Content-Type": content_type, **self.some_headers()}
        return self.build("patch", "PATCH", target, body=body, headers=headers)

    def bundle(self) -> HostileRequest:
        entries = [self.bundle_entry() for _ in range(self.random.randint(0, 6))]
        bundle: Any = {"resourceType": "Bundle",
                       "type": self.choice(["transaction", "batch", "collection", "x", 3]),
                       "entry": entries}
        if self.random.random() < 0.1:
            bundle = self.nested(self.random.randint(500, 3000))
        return self.build("bundle", "POST", "/fhir", body=_dumps(bundle),
                          headers={"Content-Type": "application/fhir+json"})

    def operation(self) -> HostileRequest:
        target = self.choice([
            f"/fhir/Patient/{self.choice(self.patient_ids)}/$everything",
            "/fhir/Patient/$everything", "/fhir/$export", "/fhir/Patient/$export",
            "/fhir/Group/x/$export", "/fhir/$bogus", "/fhir/Patient/$validate",
            "/fhir/_history", "/fhir/Patient/_history", "/fhir/metadata",
            "/fhir/.well-known/smart-configuration", "/auth/token", "/auth/authorize",
            "/fhir/$import", "/fhir/_jobs/x", "/", "/fhir/Patient/1/*", "//fhir//Patient",
        ])
        target += "?" + "&".join(self.search_param() for _ in range(self.random.randint(0, 3)))
        method = self.choice(["GET", "GET", "POST", "DELETE"])
        body = _dumps(self.json_value(3)) if method == "POST" else b""
        return self.build("operation", method, target, body=body,
                          headers={"Content-Type": "application/fhir+json",
                                   **self.some_headers()})

    def protocol(self) -> HostileRequest:
        """Requests that break HTTP/1.1 itself; the HTTP layer must still answer FHIR."""
        host = self.host.encode()
        choices = [
            b"GET /fhir/metadata\r\n\r\n",  # HTTP/0.9-style request line with a version gap
            b"GET /fhir/metadata\r\n",  # HTTP/0.9
            b"GET /fhir/\x00metadata HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
            b"GET /fhir/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
            b"GET /fhir/metadata HTTP/1.1\r\nHost: " + host + b"\r\nX-Big: " + b"b" * 100_000
            + b"\r\n\r\n",
            b"GET /fhir/metadata HTTP/1.1\r\nHost: " + host + b"\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(300)) + b"\r\n",
            b"GARBAGE\r\n\r\n",
            b"GET /fhir/metadata HTTP/9.9\r\nHost: " + host + b"\r\n\r\n",
            b"POST /fhir/Patient HTTP/1.1\r\nHost: " + host
            + b"\r\nContent-Length: -1\r\n\r\n",
            b"POST /fhir/Patient HTTP/1.1\r\nHost: " + host
            + b"\r\nContent-Length: abc\r\n\r\n",
            b"POST /fhir/Patient HTTP/1.1\r\nHost: " + host
            + b"\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            b"POST /fhir/Patient HTTP/1.1\r\nHost: " + host
            + b"\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST /fhir/Patient HTTP/1.1\r\nHost: " + host
            + b"\r\nTransfer-Encoding: chunked\r\nContent-Type: application/fhir+json"
            + b"\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            b"GET /fhir/metadata HTTP/1.1\r\nHost: " + host + b"\r\nNoColonHere\r\n\r\n",
            b"GET /fhir/metadata HTTP/1.1\r\nHost: evil.example\"><script>\r\n\r\n",
            b"GET /fhir/metadata HTTP/1.1\r\nHost: " + host + b"\r\n\tfolded: x\r\n\r\n",
            b"GET http://other.example/fhir/metadata HTTP/1.1\r\nHost: " + host + b"\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),  # a TLS hello
        ]
        raw = self.choice(choices)
        return HostileRequest("protocol", raw, raw.split(b" ", 1)[0].decode("latin-1"))

    # -- parts ----------------------------------------------------------------------------

    def search_param(self) -> str:
        name = self.choice(SEARCH_NAMES)
        roll = self.random.random()
        if roll < 0.1:
            depth = self.random.randint(2, 60)
            name = ".".join(["link"] * depth) + ".name"
        elif roll < 0.15:
            name = f"_has:{self.choice(TYPES)}:{self.choice(SEARCH_NAMES)}:" \
                   f"{self.choice(SEARCH_NAMES)}"
        name += self.choice(MODIFIERS)
        return quote(name, safe=":._") + "=" + self.search_value()

    def search_value(self) -> str:
        roll = self.random.random()
        if roll < 0.08:
            values = ",".join(self.choice(VALUES) for _ in range(self.random.randint(50, 1200)))
            return quote(values, safe="|,")
        if roll < 0.14:
            return self.choice(["%00", "a%00b", "%ff%fe", "%C0%80", "%E2%28%A1", "%"])
        if roll < 0.2:
            return "x" * self.random.choice([100, 3000, 10_000])
        value = self.choice(PREFIXES) + self.choice(VALUES)
        return quote(value, safe="|,")

    def some_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(self.random.randint(0, 2)):
            name = self.choice(list(WEIRD_HEADERS))
            headers[name] = self.choice(WEIRD_HEADERS[name])
        return headers

    def hostile_body(self, kind: str) -> bytes:
        roll = self.random.random()
        if roll < 0.08:
            return self.choice([b"", b"{", b"null", b"[]", b"\xff\xfe\x00", b"{}" * 1000,
                                b'{"resourceType":"Patient","a":1e400}',
                                b'{"resourceType":"Patient","id":"' + b"9" * 400 + b'"}'])
        if roll < 0.15:
            return _dumps(self.nested(self.random.randint(200, 5000)))
        return _dumps(self.resource(kind))

    def resource(self, kind: str) -> dict[str, Any]:
        resource: dict[str, Any] = {"resourceType": self.choice([kind, kind, "Patient", "X"])}
        for _ in range(self.random.randint(0, 5)):
            resource[self.choice(["name", "id", "meta", "identifier", "birthDate", "gender",
                                  "text", "subject", "status", "code", "valueString",
                                  "valueQuantity", "contained", "extension", "x"])] = \
                self.json_value(3)
        if kind == "Patient" and self.random.random() < 0.3:
            resource["name"] = [{"family": self.hostile_string()}]
        return resource

    def hostile_string(self) -> str:
        return self.choice(["a\u0000b", "\u0001", "x" * 2700, "y" * 10_000, "\ud7ff",
                            " ", "", "\t\n", "名前" * 500, "a\u202eb"])

    def json_value(self, depth: int) -> Any:
        roll = self.random.random()
        if depth <= 0 or roll < 0.4:
            return self.choice([None, True, 0, -1, 2**70, 1.5, -0.0, "", "x",
                                self.hostile_string(), "2020-01-01", "Patient/1",
                                "urn:uuid:1", "#x"])
        if roll < 0.7:
            return [self.json_value(depth - 1) for _ in range(self.random.randint(0, 3))]
        keys = ["resourceType", "id", "reference", "system", "value", "code", "url",
                "div", "status", "extension", "resource", "entry", "x"]
        return {self.choice(keys): self.json_value(depth - 1)
                for _ in range(self.random.randint(0, 4))}

    @staticmethod
    def nested(depth: int) -> Nested:
        return Nested(depth)

    def json_patch(self) -> Any:
        if self.random.random() < 0.25:  # the copy bomb, at various strengths
            count = self.random.randint(10, 40)
            return [{"op": "copy", "from": "/name", "path": "/name/-"}] * count
        ops = []
        for _ in range(self.random.randint(0, 5)):
            ops.append({"op": self.choice(["add", "remove", "replace", "move", "copy",
                                           "test", "bogus"]),
                        "path": self.choice(["/name", "/name/-", "/name/0", "/id", "",
                                             "/", "/a/b/c", "/name/99999999999999999999",
                                             "/resourceType", "/meta/versionId"]),
                        "from": self.choice(["/name", "/", "", "/nope"]),
                        "value": self.json_value(2)})
        return self.choice([ops, ops, {}, "x", None])

    def fhirpath_patch(self) -> Any:
        parts = []
        for _ in range(self.random.randint(0, 4)):
            parts.append({"name": "operation", "part": [
                {"name": "type", "valueCode": self.choice(["add", "insert", "delete",
                                                           "replace", "move", "x"])},
                {"name": "path", "valueString": self.choice([
                    "Patient", "Patient.name", "Patient.name[0]", "Patient.name.where("
                    "family='x' or given='A')", "Patient.name.first().family", "(", "",
                    "Patient.name.descendants()", "Patient.repeat(name)"])},
                {"name": "name", "valueString": self.choice(["family", "name", ""])},
                {"name": "value", "valueString": self.hostile_string()},
                {"name": "index", "valueInteger": self.choice([0, -1, 2**31, 99])},
            ]})
        return {"resourceType": "Parameters", "parameter": parts}

    def bundle_entry(self) -> Any:
        return {
            "fullUrl": self.choice(["urn:uuid:1", "urn:uuid:2", "Patient/1", "", "x"]),
            "request": {"method": self.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "X"]),
                        "url": self.choice(["Patient", "Patient/1", "Patient?identifier=a",
                                            "Patient?" + self.search_param(), "Nope/1", "",
                                            "Patient/1/_history/x", "urn:uuid:1"]),
                        "ifMatch": self.choice([None, 'W/"1"', 'W/"' + "9" * 500 + '"'])},
            "resource": self.choice([self.json_value(3), self.resource("Patient"), None]),
        }

    def choice(self, options: list[Any]) -> Any:
        return self.random.choice(options)

    def build(self, kind: str, method: str, target: str, *, body: bytes = b"",
              headers: dict[str, str] | None = None) -> HostileRequest:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}", "Connection: close"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        return HostileRequest(kind, head + body, method)


TIMED_OUT = -1  # the status of an answer that did not come within the client's timeout


def send(port: int, request: HostileRequest, timeout: float = 15.0) -> Answer | None:
    """Send the raw bytes and read one response; None when the server closed without one."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return None
    with sock:
        # the server may refuse before reading everything; its answer still counts
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request.raw)
        response = http.client.HTTPResponse(sock, method=request.method)
        try:
            response.begin()
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None
        except TimeoutError:
            return Answer(TIMED_OUT, {}, b"")
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)

"""What authorization costs a request: the same reads and searches, open and with tokens.

Two servers on one SQLite database, one open (loopback development mode) and
one with ``--auth``, take turns answering the same requests from
``--clients`` concurrent clients, so both see the same machine load.  The
token server gets three kinds of token: a backend service (``system/*.rs``,
checked once per request, nothing added to the query), a patient-bound token
(every search gains the compartment clause, every read a membership query),
and the same with a v2 constraint.  Prints requests/s and p50/p95 latency of
each beside the open server's, and the ratios.

    python -m benchmarks.auth [--patients 20] [--requests 2000] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from benchmarks.common import Server

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _hygeia(*args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args], check=True,
                         capture_output=True, text=True).stdout
    loaded: dict[str, object] = json.loads(out)
    return loaded


def _backend(folder: Path, db: str, scopes: str
             ) -> tuple[str, ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP384R1())
    public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    public["kid"] = "k"
    jwks = folder / f"{uuid.uuid4().hex}.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    client = str(_hygeia("auth", "client", "create", "--db", db, "--name", "bench",
                         "--scopes", scopes, "--jwks-file", str(jwks))["client_id"])
    return client, key, scopes


def _token(base: str, client: str, key: ec.EllipticCurvePrivateKey, scope: str) -> str:
    url = base.removesuffix("/fhir") + "/auth/token"
    now = int(time.time())
    assertion = jwt.encode({"iss": client, "sub": client, "aud": url, "exp": now + 60,
                            "jti": uuid.uuid4().hex}, key, algorithm="ES384",
                           headers={"kid": "k"})
    response = httpx.post(url, data={"grant_type": "client_credentials", "scope": scope,
                                     "client_assertion_type": ASSERTION_TYPE,
                                     "client_assertion": assertion})
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def _signed(base: str, secret_key: Path, db: str, claims: dict[str, object]) -> str:
    """A patient-bound token, signed with the server's own key (as a launch would give)."""
    from hygeia.server.auth.secrets import SecretBox
    from hygeia.server.auth.signing import Signer
    from hygeia.store import open_repository
    from hygeia.store.auth import AuthStore

    now = int(time.time())
    with open_repository(db) as repository:
        signer = Signer(AuthStore(repository), SecretBox.from_file(secret_key))
        return signer.sign({"iss": "bench", "sub": "bench", "aud": base, "iat": now,
                            "exp": now + 3600, "jti": uuid.uuid4().hex,
                            "client_id": "bench", **claims})


def _seed(base: str, token: str, patients: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=60, headers=headers) as client:
        for n in range(patients):
            entries = [{"resource": {"resourceType": "Patient", "id": f"p{n}",
                                     "name": [{"family": f"Family{n}"}]},
                        "request": {"method": "PUT", "url": f"Patient/p{n}"}}]
            for k in range(10):
                category = "vital-signs" if k % 2 else "laboratory"
                entries.append({"resource": {
                    "resourceType": "Observation", "id": f"p{n}-o{k}", "status": "final",
                    "category": [{"coding": [{"code": category}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": f"100{k}-1"}]},
                    "subject": {"reference": f"Patient/p{n}"}},
                    "request": {"method": "PUT", "url": f"Observation/p{n}-o{k}"}})
            response = client.post(base, json={"resourceType": "Bundle",
                                               "type": "transaction", "entry": entries})
            response.raise_for_status()


def _run(base: str, token: str | None, paths: list[str], clients: int
         ) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []

    def one(chunk: list[str]) -> list[float]:
        times = []
        with httpx.Client(base_url=base + "/", headers=headers, timeout=60) as client:
            for path in chunk:
                started = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
        return times

    chunks = [paths[i::clients] for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for times in pool.map(one, chunks):
            latencies.extend(times)
    return len(paths) / (time.perf_counter() - started), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = f"sqlite:///{folder}/auth.db"
        secret_key = folder / "secret.key"
        writer = _backend(folder, db, "system/*.cruds")
        reader = _backend(folder, db, "system/*.rs")
        secured = Server(db, "--auth", "--secret-key-file", str(secret_key))
        open_server = Server(db)
        try:
            _seed(secured.base, _token(secured.base, *writer), args.patients)
            tokens: dict[str, str | None] = {
                "system/*.rs": _token(secured.base, *reader),
                "patient/*.rs (patient p0)": _signed(secured.base, secret_key, db, {
                    "scope": "patient/*.rs", "patient": "p0"}),
                "patient/Observation.rs?category=laboratory": _signed(
                    secured.base, secret_key, db,
                    {"scope": "patient/Observation.rs?category=laboratory "
                              "patient/Patient.rs", "patient": "p0"})}
            kinds: dict[str, Callable[[int], str]] = {
                "read": lambda i: f"Observation/p0-o{(i % 5) * 2}",
                "search": lambda i: f"Observation?patient=p0&code=100{(i % 5) * 2}-1",
            }
            print(f"{args.requests} requests per row, {args.clients} clients, SQLite, "
                  f"{args.patients} patients x 10 Observations")
            print(f"{'kind':8} {'token':44} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
                  f"{'vs open':>8}")
            for kind, make in kinds.items():
                paths = [make(i) for i in range(args.requests)]
                _run(open_server.base, None, paths[:100], args.clients)  # warm up
                baseline, base_lat = _run(open_server.base, None, paths, args.clients)
                _print(kind, "open server (baseline)", baseline, base_lat, None)
                for name, token in tokens.items():
                    _run(secured.base, token, paths[:100], args.clients)
                    rate, latencies = _run(secured.base, token, paths, args.clients)
                    _print(kind, name, rate, latencies, rate / baseline)
        finally:
            secured.stop()
            open_server.stop()


def _print(kind: str, name: str, rate: float, latencies: list[float],
           ratio: float | None) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[int(len(ordered) * 0.95)] * 1000
    shown = "-" if ratio is None else f"{ratio:.2f}"
    print(f"{kind:8} {name:44} {rate:8.0f} {p50:8.2f} {p95:8.2f} {shown:>8}")


if __name__ == "__main__":
    main()

"""``hygeia serve --demo`` with the clinical pillar: lines that work as printed."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import httpx

from tests.conftest import ServerProcess


def test_the_demo_lines_call_the_news2_service(clinical_pillar: None, tmp_path: Path) -> None:
    demo = ServerProcess(f"sqlite:///{tmp_path}/demo.db", "--demo", stdout=subprocess.PIPE)
    try:
        assert demo.client.get("Patient").json()["total"] == 2  # the pillar adds none
    finally:
        demo.stop()
    assert demo.process.stdout is not None
    printed = [line.strip() for line in demo.process.stdout.read().decode().splitlines()]
    start = next(i for i, line in enumerate(printed) if line.startswith("Clinical pillar"))
    discovery, call = shlex.split(printed[start + 1]), shlex.split(printed[start + 2])
    old_root = f"http://127.0.0.1:{demo.port}"
    again = ServerProcess(demo.db_url)  # the same database, on another port
    new_root = f"http://127.0.0.1:{again.port}"
    try:
        listed = httpx.get(discovery[-1].replace(old_root, new_root), timeout=10)
        assert "news2" in {service["id"] for service in listed.json()["services"]}
        url = next(word for word in call if word.startswith(old_root))
        answer = httpx.post(url.replace(old_root, new_root), timeout=10,
                            content=call[call.index("-d") + 1],
                            headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
        [card] = answer.json()["cards"]
        assert card["summary"].startswith("NEWS2")
    finally:
        again.stop()

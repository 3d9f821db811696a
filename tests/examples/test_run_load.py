"""`bakeoff run` drives the load its Bakeoff describes through one load interface (bakeoff.load).

The shop's shoppers (``spec.load.shoppers``) are the same built-in generator as
a request mix, so they carry the user id in the Bakeoff's own sticky header.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"

pytestmark = pytest.mark.slow


def shop_users(db: Path) -> set[str]:
    """The user ids a shop's database has a cart or an order for (none while it is not there yet)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute("SELECT user FROM cart_items UNION SELECT user FROM orders").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return set()
    return {u for (u,) in rows}


def test_shoppers_stay_on_one_variant_by_the_bakeoffs_own_sticky_header(tmp_path):
    docs = list(yaml.safe_load_all((SHOP / "bakeoff.yaml").read_text()))
    bakeoff = docs[0]
    spec = bakeoff["spec"]
    dbs = {"mainline": tmp_path / "mainline.db", "better-checkout": tmp_path / "better.db"}
    spec["mainline"]["workingDir"] = str(SHOP)
    spec["mainline"]["command"] += ["--db", str(dbs["mainline"])]
    spec["routing"].update(stickiness={"header": "X-Shopper"}, steps=[0.5], maxCandidateShare=0.5)
    spec["load"] = {"users": 8, "think": "20ms", "shoppers": True}
    (variant,) = [d for d in docs[1:] if d["metadata"]["name"] == "better-checkout"]
    variant["spec"]["workingDir"] = str(SHOP)
    variant["spec"]["command"] += ["--db", str(dbs["better-checkout"])]
    path = tmp_path / "sticky-shop.yaml"
    path.write_text(yaml.safe_dump_all([bakeoff, variant]))

    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bakeoff", "run", str(path), "--headless", "--state-dir", str(state)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            users = {name: shop_users(db) for name, db in dbs.items()}
            if min(len(u) for u in users.values()) >= 40:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert min(len(u) for u in users.values()) >= 40, f"shoppers did not reach both shops: {users}"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    users = {name: shop_users(db) for name, db in dbs.items()}
    both = users["mainline"] & users["better-checkout"]
    assert not both, (
        f"{len(both)} of {len(users['mainline'] | users['better-checkout'])} shoppers have a cart or an order "
        f"on both variants: not kept sticky by X-Shopper, e.g. {sorted(both)[:3]}"
    )
    assert "simulated shoppers" in (state / "report.json").read_text()

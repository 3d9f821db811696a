"""What every shop implementation shares: the schema, the seed data, the business rules and the command line.

Only data and rules live here, so that all five implementations serve the same
catalogue and charge the same totals; how each one reads, caches and answers
is its own business (see the implementation files).
"""

from __future__ import annotations

import argparse
import atexit
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

PRODUCT_COUNT = 200
PAGE_SIZE = 20
# Prices are integer cents everywhere: float sums would let implementations
# disagree on a total by a cent depending on the order they add items in.
SHIPPING_FEE_CENTS = 495
FREE_SHIPPING_THRESHOLD_CENTS = 5000
MAX_QTY_PER_LINE = 99

CATEGORIES = ("kitchen", "garden", "books", "toys", "tools", "outdoor", "office", "audio")
_ADJECTIVES = ("compact", "sturdy", "classic", "deluxe", "travel", "eco", "pro", "mini", "smart", "vintage")
_NOUNS = {
    "kitchen": ("kettle", "knife set", "pan", "grinder", "teapot"),
    "garden": ("hose", "trowel", "planter", "sprinkler", "shears"),
    "books": ("cookbook", "atlas", "novel", "field guide", "almanac"),
    "toys": ("puzzle", "kite", "robot kit", "board game", "yo-yo"),
    "tools": ("drill", "spirit level", "wrench set", "tape measure", "clamp"),
    "outdoor": ("tent", "lantern", "hammock", "cooler", "backpack"),
    "office": ("desk lamp", "notebook", "stapler", "monitor stand", "pen set"),
    "audio": ("headphones", "speaker", "turntable", "microphone", "radio"),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS categories (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS products (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    category_id  INTEGER NOT NULL REFERENCES categories(id),
    price_cents  INTEGER NOT NULL CHECK (price_cents > 0),
    stock        INTEGER NOT NULL CHECK (stock >= 0),
    weight_grams INTEGER NOT NULL CHECK (weight_grams >= 0),
    description  TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS cart_items (
    user    TEXT    NOT NULL,
    product INTEGER NOT NULL REFERENCES products(id),
    qty     INTEGER NOT NULL CHECK (qty > 0),
    PRIMARY KEY (user, product)
);
CREATE TABLE IF NOT EXISTS orders (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user           TEXT    NOT NULL,
    subtotal_cents INTEGER NOT NULL,
    shipping_cents INTEGER NOT NULL,
    total_cents    INTEGER NOT NULL,
    created_at     REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id    INTEGER NOT NULL REFERENCES orders(id),
    product     INTEGER NOT NULL REFERENCES products(id),
    qty         INTEGER NOT NULL,
    price_cents INTEGER NOT NULL
);
"""


def is_digital(product_id: int) -> bool:
    """E-books and gift cards: nothing to ship, so they weigh 0 g (every 11th product)."""
    return product_id % 11 == 0


def seed_rows() -> tuple[list[tuple], list[tuple]]:
    """The catalogue as (categories, products) rows; the same on every run and in every process."""
    rng = random.Random(20240611)
    categories = [(i + 1, name) for i, name in enumerate(CATEGORIES)]
    products = []
    for pid in range(1, PRODUCT_COUNT + 1):
        cat_id = rng.randrange(len(CATEGORIES)) + 1
        category = CATEGORIES[cat_id - 1]
        # Log-normal prices (median about 18.00) ending in .99: most single items
        # are under the free-shipping threshold, so shipping matters to shoppers.
        dollars = min(89, max(1, int(rng.lognormvariate(2.9, 0.7))))
        price = dollars * 100 + 99
        if is_digital(pid):
            name = f"{rng.choice(_ADJECTIVES)} {category} e-gift card #{pid}"
            weight, stock = 0, 1_000_000
        else:
            name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS[category])} #{pid}"
            weight, stock = rng.randrange(50, 5000, 10), rng.randrange(500, 1500)
        description = f"A {name.split(' #')[0]} from our {category} range."
        products.append((pid, name, cat_id, price, stock, weight, description))
    return categories, products


def open_database(path: str | Path) -> sqlite3.Connection:
    """Open (creating and seeding if empty) the shop database at path.

    One connection per process, used only from the event loop thread; every
    handler runs its statements without awaiting in between, so a checkout's
    transaction cannot interleave with another request.
    """
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    # WAL + synchronous=NORMAL: a commit does not fsync, so cart writes under
    # load cost microseconds rather than a disk flush each.
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(SCHEMA)
    (count,) = db.execute("SELECT COUNT(*) FROM products").fetchone()
    if count == 0:
        categories, products = seed_rows()
        db.execute("BEGIN")
        db.executemany("INSERT INTO categories VALUES (?, ?)", categories)
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?)", products)
        db.execute("COMMIT")
    return db


def shipping_for(subtotal_cents: int) -> int:
    """The shop's one shipping rule; every implementation charges exactly this."""
    if subtotal_cents == 0 or subtotal_cents >= FREE_SHIPPING_THRESHOLD_CENTS:
        return 0
    return SHIPPING_FEE_CENTS


def revenue_header(total_cents: int) -> dict[str, str]:
    """The business value the router records for a checkout (in currency units)."""
    return {"Bakeoff-Metric-revenue": f"{total_cents / 100:.2f}"}


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--db", help="SQLite file (created and seeded if empty); default: a fresh temporary file")
    return p.parse_args()


def database_path(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    # A private directory per process, removed at exit, so that several
    # implementations (and several copies of one) never share a database.
    tmp = tempfile.mkdtemp(prefix="bakeoff-shop-")
    atexit.register(shutil.rmtree, tmp, True)
    return Path(tmp) / "shop.db"


def serve(description: str, make_app: Callable[[sqlite3.Connection], web.Application]) -> None:
    """Command line entry shared by the implementations: parse, open the database, run."""
    args = parse_args(description)
    db = open_database(database_path(args))
    app = make_app(db)
    # run_app turns SIGTERM into a clean shutdown, so atexit cleans the temp DB.
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)

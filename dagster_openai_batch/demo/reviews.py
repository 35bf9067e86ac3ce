"""Deterministic product reviews for the demo (no download, same rows on every machine).

>>> rows = make_reviews(3, seed=1)
>>> sorted(rows[0])
['product', 'rating', 'review_id', 'text']
"""

from __future__ import annotations

import random

PRODUCTS = [
    "Aurora kettle",
    "Nimbus headphones",
    "Trail backpack",
    "Pixel desk lamp",
    "Brew coffee grinder",
    "Orbit robot vacuum",
    "Summit hiking boots",
    "Echo smart speaker",
    "Zen yoga mat",
    "Volt power bank",
]
PRAISE = [
    "works exactly as described",
    "feels solid and well made",
    "arrived a day early",
    "is quiet and easy to use",
    "battery lasts for days",
    "looks great on my desk",
]
COMPLAINTS = [
    "stopped working after a week",
    "the lid is flimsy",
    "customer support never answered",
    "is much louder than advertised",
    "the strap broke on day two",
    "instructions were useless",
]
NEUTRAL = [
    "does the job",
    "is fine for the price",
    "is okay, nothing special",
    "matches the photos",
]


def make_reviews(count: int, *, seed: int = 0, prefix: str = "rev") -> list[dict[str, object]]:
    """``count`` reviews ``{review_id, product, rating, text}``, the same for the same seed."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        product = rng.choice(PRODUCTS)
        rating = rng.choice([1, 2, 3, 4, 5, 5, 4])
        if rating >= 4:
            text = f"The {product} {rng.choice(PRAISE)} and {rng.choice(PRAISE)}."
        elif rating <= 2:
            text = f"The {product} {rng.choice(COMPLAINTS)}; also it {rng.choice(COMPLAINTS)}."
        else:
            text = f"The {product} {rng.choice(NEUTRAL)}, but it {rng.choice(COMPLAINTS)}."
        rows.append(
            {
                "review_id": f"{prefix}-{seed}-{i:05d}",
                "product": product,
                "rating": rating,
                "text": text,
            }
        )
    return rows

"""Plan a dataset before drawing a pixel: seizure cases, their items' labels, tells and splits.

One case is one shipment of one product family. Its photos share a scene style; its
counterfeits share one factory's tells. How many of a case's items are counterfeit is
drawn independently of the scene style, so the style predicts nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from longteng.data.synth.config import SynthConfig

from longteng.data.synth.styles import SceneStyle, draw_scene_style
from longteng.data.synth.tells import STRENGTH_RANGES

# Independent random streams, so that adding a draw to one never shifts another.
STREAM_PLAN, STREAM_CASE, STREAM_PRODUCT, STREAM_SCENE, STREAM_TELLS = range(5)
STREAM_ITEMS = 5  # a photo of several items: how many, where, which are fakes
# Share of cases in val and test (the rest train), per stratum of product and majority label.
_HELD_OUT_FRACTION = 0.15
MAX_TELLS_PER_ITEM = 3


def rng_for(seed: int, stream: int, index: int, item: int | None = None) -> np.random.Generator:
    """The generator of one stream of one photo (and of one of its items, in a photo of several)."""
    entropy = [seed, stream, index] if item is None else [seed, stream, index, item]
    return np.random.default_rng(np.random.SeedSequence(entropy))


@dataclass(frozen=True)
class FactoryTell:
    """A tell as one counterfeit factory produces it: the case's level and variant."""

    name: str
    level: float
    variant: int


@dataclass(frozen=True)
class CasePlan:
    index: int
    case_id: str
    product: str
    split: str
    style: SceneStyle
    tells: tuple[FactoryTell, ...]


@dataclass(frozen=True)
class ImagePlan:
    index: int
    case: CasePlan
    counterfeit: bool

    @property
    def authenticity(self) -> str:
        return "counterfeit" if self.counterfeit else "genuine"

    @property
    def path(self) -> str:
        return f"{self.case.product}/{self.authenticity}/{self.case.case_id}-{self.index:06d}.jpg"


def plan_dataset(config: SynthConfig) -> list[ImagePlan]:
    rng = rng_for(config.seed, STREAM_PLAN, 0)
    sizes = _case_sizes(config.images, config.images_per_case, rng)
    products = [config.products[i % len(config.products)] for i in range(len(sizes))]
    products = [products[int(i)] for i in rng.permutation(len(products))]
    counterfeit_counts = [_counterfeit_count(size, config.counterfeit_fraction, rng) for size in sizes]
    splits = _assign_splits(products, sizes, counterfeit_counts, rng)

    plans: list[ImagePlan] = []
    for case_index, (size, product, counterfeits, split) in enumerate(zip(sizes, products, counterfeit_counts, splits)):
        case_rng = rng_for(config.seed, STREAM_CASE, case_index)
        case = CasePlan(
            index=case_index,
            case_id=f"synth-{config.seed}-{case_index:04d}",
            product=product,
            split=split,
            style=draw_scene_style(case_rng),
            tells=_factory_tells(config, case_rng),
        )
        # Which items of the shipment are the fakes: anywhere in the case's photo order.
        fake = np.zeros(size, bool)
        fake[case_rng.permutation(size)[:counterfeits]] = True
        for counterfeit in fake:
            plans.append(ImagePlan(len(plans), case, bool(counterfeit)))
    return plans


def _case_sizes(images: int, mean: int, rng: np.random.Generator) -> list[int]:
    """Case sizes around `mean` (1 or more photos each) summing to exactly `images`."""
    cases = max(1, min(images, round(images / mean)))
    sizes = 1 + rng.poisson(max(0, mean - 1), cases)
    while sizes.sum() > images:
        sizes[int(np.argmax(sizes))] -= 1
    while sizes.sum() < images:
        sizes[int(np.argmin(sizes))] += 1
    return [int(s) for s in sizes]


def _counterfeit_count(size: int, fraction: float, rng: np.random.Generator) -> int:
    """A case's counterfeit share varies around `fraction` but stays mixed.

    Cases that are all fake or all genuine would let any case-level nuisance (box, lamp,
    camera) correlate with the label by chance in a dataset of a few dozen cases.
    """
    spread = 0.75 * min(fraction, 1.0 - fraction)
    share = fraction + spread * (2.0 * rng.beta(2.0, 2.0) - 1.0)
    expected = share * size
    whole = int(np.floor(expected))
    return whole + int(rng.random() < expected - whole)


def _assign_splits(
    products: list[str], sizes: list[int], counterfeit_counts: list[int], rng: np.random.Generator
) -> list[str]:
    """Whole cases to train/val/test, about 70/15/15 of cases, balanced by stratum.

    Strata are (product, majority label). Each stratum of three or more cases gives val
    and test their share first, which puts every product and both labels into every
    split once there are enough cases; small datasets are then topped up from the
    remaining cases, strata interleaved, so val and test are never empty from 3 cases on.
    """
    strata: dict[tuple[str, bool], list[int]] = defaultdict(list)
    for index, (product, size, fakes) in enumerate(zip(products, sizes, counterfeit_counts)):
        strata[(product, 2 * fakes >= size)].append(index)
    splits = ["train"] * len(products)
    leftovers: list[list[int]] = []
    for key in sorted(strata):
        members = [strata[key][int(i)] for i in rng.permutation(len(strata[key]))]
        held_out = max(1, round(_HELD_OUT_FRACTION * len(members))) if len(members) >= 3 else 0
        for position, case_index in enumerate(members[: 2 * held_out]):
            splits[case_index] = "test" if position < held_out else "val"
        leftovers.append(members[2 * held_out :])
    # Interleave strata so top-ups spread over products and labels.
    pool: list[int] = []
    for rank in range(max((len(stratum) for stratum in leftovers), default=0)):
        pool.extend(stratum[rank] for stratum in leftovers if rank < len(stratum))
    target = max(1, round(_HELD_OUT_FRACTION * len(products))) if len(products) >= 3 else 0
    for split in ("test", "val"):
        while splits.count(split) < target and pool:
            splits[pool.pop(0)] = split
    return splits


def _factory_tells(config: SynthConfig, rng: np.random.Generator) -> tuple[FactoryTell, ...]:
    allowed = config.allowed_tells
    low, high = STRENGTH_RANGES[config.difficulty]
    count = int(rng.integers(1, min(MAX_TELLS_PER_ITEM, max(1, len(allowed))) + 1))
    names = [allowed[int(i)] for i in rng.permutation(len(allowed))[:count]] if allowed else []
    return tuple(FactoryTell(name, float(rng.uniform(low, high)), int(rng.integers(2**31))) for name in sorted(names))

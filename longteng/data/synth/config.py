"""SynthConfig: everything that determines a synthetic dataset, validated up front."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from longteng.data.synth.designs import ALL_PRODUCTS, PRODUCTS
from longteng.data.synth.tells import TELLS
from longteng.errors import ConfigError

DIFFICULTIES = ("easy", "medium", "hard")
# Width and height limits; 100 MP is also the loader's decompression-bomb guard.
MIN_SIDE = 64
MAX_SIDE = 12000
MAX_PIXELS = 100_000_000
MAX_SEED = 2**63 - 1
# An opened box of small items (a tray of flash drives) holds about this many in one photo.
MAX_ITEMS_PER_PHOTO = 12
SINGLE_ITEM = (1, 1)

__all__ = [
    "ALL_PRODUCTS", "DIFFICULTIES", "PRODUCTS", "SINGLE_ITEM", "SynthConfig", "parse_items_per_photo", "parse_size",
    "parse_tell_names",
]


@dataclass(frozen=True)
class SynthConfig:
    images: int
    seed: int = 0
    difficulty: str = "medium"
    size: tuple[int, int] = (640, 480)  # width, height
    tells: tuple[str, ...] | None = None  # restrict the catalogue (None = all)
    exclude_tells: tuple[str, ...] = ()
    counterfeit_fraction: float = 0.5
    images_per_case: int = 8  # mean photos per seizure case
    products: tuple[str, ...] = PRODUCTS  # the families drawn, in turn
    # (fewest, most) items in one photo, an opened box; one family per photo (its case's).
    items_per_photo: tuple[int, int] = SINGLE_ITEM
    # An opened box of several families: each item's family drawn from `products`, except the
    # photo's decisive item (its first counterfeit, or its first item), which is the case's.
    mixed_products: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 1:
            raise ConfigError(f"images must be a positive integer, got {self.images!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.difficulty not in DIFFICULTIES:
            raise ConfigError(f"difficulty {self.difficulty!r} unknown; allowed: {', '.join(DIFFICULTIES)}")
        object.__setattr__(self, "size", _checked_size(self.size))
        if self.tells is not None:
            object.__setattr__(self, "tells", _checked_tells(self.tells, "tells (--tells)"))
        object.__setattr__(self, "exclude_tells", _checked_tells(self.exclude_tells, "exclude_tells (--exclude-tells)"))
        if not 0.0 <= float(self.counterfeit_fraction) <= 1.0:
            raise ConfigError(f"counterfeit_fraction must be between 0 and 1, got {self.counterfeit_fraction!r}")
        if (
            isinstance(self.images_per_case, bool)
            or not isinstance(self.images_per_case, int)
            or self.images_per_case < 1
        ):
            raise ConfigError(f"images_per_case must be a positive integer, got {self.images_per_case!r}")
        object.__setattr__(self, "products", _checked_products(self.products))
        object.__setattr__(self, "items_per_photo", _checked_items(self.items_per_photo))
        if not isinstance(self.mixed_products, bool):
            raise ConfigError(f"mixed_products must be true or false, got {self.mixed_products!r}")
        if self.mixed_products and self.items_per_photo[1] < 2:
            raise ConfigError("mixed products (--mixed-products) need photos of several items: pass --items-per-photo, e.g. 1-6")
        if not self.allowed_tells and self.counterfeit_fraction > 0:
            raise ConfigError(
                "no tells left to make counterfeits with: --tells and --exclude-tells together exclude all of "
                + ", ".join(TELLS)
            )

    @property
    def allowed_tells(self) -> tuple[str, ...]:
        """The catalogue entries counterfeits may carry, in catalogue order."""
        chosen = TELLS if self.tells is None else self.tells
        return tuple(name for name in TELLS if name in chosen and name not in self.exclude_tells)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["size"] = list(self.size)
        data["tells"] = None if self.tells is None else list(self.tells)
        data["exclude_tells"] = list(self.exclude_tells)
        if self.products == PRODUCTS:  # configs written before --products existed read the same
            del data["products"]
        else:
            data["products"] = list(self.products)
        if self.items_per_photo == SINGLE_ITEM:  # nor those written before --items-per-photo
            del data["items_per_photo"]
        else:
            data["items_per_photo"] = list(self.items_per_photo)
        if not self.mixed_products:  # nor those written before --mixed-products
            del data["mixed_products"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SynthConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"synth config is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("synth config must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> SynthConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown synth config keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("size", "exclude_tells", "products", "items_per_photo"):
            if key in values:
                values[key] = tuple(values[key])
        if values.get("tells") is not None:
            values["tells"] = tuple(values["tells"])
        return cls(**values)


def _checked_size(size: object) -> tuple[int, int]:
    try:
        width, height = size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (width, height), got {size!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (width, height)):
        raise ConfigError(f"size must be two integers, got {size!r}")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ConfigError(f"size {width}x{height}: each side must be from {MIN_SIDE} to {MAX_SIDE} pixels")
    if width * height > MAX_PIXELS:
        raise ConfigError(f"size {width}x{height} exceeds {MAX_PIXELS // 1_000_000} megapixels")
    return (width, height)


def _checked_items(items: object) -> tuple[int, int]:
    try:
        fewest, most = items  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ConfigError(f"items_per_photo must be (fewest, most), got {items!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (fewest, most)) or not 1 <= fewest <= most <= MAX_ITEMS_PER_PHOTO:
        raise ConfigError(
            f"items_per_photo (--items-per-photo) must be whole numbers 1 <= fewest <= most <= {MAX_ITEMS_PER_PHOTO}, got {items!r}"
        )
    return (fewest, most)


def _checked_tells(names: Iterable[str], argument: str) -> tuple[str, ...]:
    return _checked_names(names, TELLS, argument, "tell")


def _checked_products(names: Iterable[str]) -> tuple[str, ...]:
    checked = _checked_names(names, ALL_PRODUCTS, "products (--products)", "product")
    if not checked:
        raise ConfigError("products (--products) must name at least one product")
    return checked


def _checked_names(names: Iterable[str], allowed: tuple[str, ...], argument: str, kind: str) -> tuple[str, ...]:
    """Known names, each once, in the order given."""
    if isinstance(names, str):
        raise ConfigError(f"{argument} must be a sequence of {kind} names, not the string {names!r}")
    checked: list[str] = []
    for name in names:
        if name not in allowed:
            raise ConfigError(f"{argument}: unknown {kind} {name!r}; allowed: {', '.join(allowed)}")
        if name not in checked:
            checked.append(name)
    return tuple(checked)


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); the CLI's --size."""
    width_text, separator, height_text = text.strip().lower().partition("x")
    try:
        if not separator:
            raise ValueError
        size = (int(width_text), int(height_text))
    except ValueError:
        raise ConfigError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 640x480") from None
    try:
        return _checked_size(size)
    except ConfigError as exc:
        raise ConfigError(f"--size {text!r}: {exc}") from None


def parse_items_per_photo(text: str) -> tuple[int, int]:
    """'1-6' -> (1, 6), '4' -> (4, 4); the CLI's --items-per-photo."""
    fewest, dash, most = text.strip().partition("-")
    try:
        items = (int(fewest), int(most if dash else fewest))
    except ValueError:
        raise ConfigError(f"--items-per-photo {text!r}: expected a count or a range such as 1-6") from None
    return _checked_items(items)


def parse_tell_names(values: Iterable[str]) -> tuple[str, ...]:
    """Repeated and/or comma-separated names ('a,b' 'c') -> ('a', 'b', 'c'); validation is SynthConfig's."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())

"""The one image loader of the project: training, evaluation, the runtime and scoring all call it.

Torch-free on purpose: the runtime path imports it.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from longteng.errors import ImageLoadError

# Phone cameras reach 50 MP; twice that is still a photo, beyond it a decompression bomb.
DEFAULT_MAX_PIXELS = 100_000_000

IMAGE_EXTENSIONS = frozenset(
    # .mpo: the multi-picture JPEG of stereo and some phone cameras (Pillow reads its first frame).
    {".jpg", ".jpeg", ".mpo", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif"}
)
# The largest --max-pixels accepted: a 1000 MP photo already needs 3 GB as RGB.
MAX_PIXELS_LIMIT = 1_000_000_000

# The loader enforces its own pixel limit (max_pixels) from the header, before decoding;
# Pillow's fixed one (about 179 MP) would refuse a photo the user explicitly allowed.
Image.MAX_IMAGE_PIXELS = None

# HEIF brands (the bytes after "ftyp") that Pillow opens with pillow-heif.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")
HEADER_BYTES = 16  # what looks_like_image_header needs


def looks_like_image_header(head: bytes) -> bool:
    """Whether a file's first HEADER_BYTES bytes are those of a format the loader opens:
    enough to tell a photo from a text file or an archive without decoding (or hashing) it."""
    return suffix_for_header(head) is not None


def suffix_for_header(head: bytes) -> str | None:
    """The file extension that fits a header (``.heic`` matters: it decides the HEIF opener)."""
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head.startswith(b"\x89PNG"):
        return ".png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    if head.startswith(b"BM"):
        return ".bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return ".tif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return ".heic"
    return None


def read_header(path: Path | str) -> bytes:
    """The first HEADER_BYTES bytes of a file (OSError if it cannot be read)."""
    with open(path, "rb") as handle:
        return handle.read(HEADER_BYTES)


# Background that transparent pixels are composited onto (packing-table white).
_ALPHA_BACKGROUND = (255, 255, 255)


@functools.cache
def heif_available() -> bool:
    """Register the optional HEIC/HEIF opener (extra `heif`) once, if installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def is_image_path(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_image(
    path: Path | str,
    *,
    target_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode `path` into an upright 8-bit RGB image.

    `target_size` is the longest side the caller will resize to; JPEGs much larger than it
    are decoded at a reduced DCT scale (draft mode), which is several times faster and
    keeps at least twice the target resolution for the final resize.

    Raises ImageLoadError (with a reason key) for anything that is not a readable photo.
    """
    draft = None if target_size is None else 2 * target_size
    return _load(Path(path), draft, max_pixels)[0]


def load_decoded(
    path: Path | str, *, min_short_side: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, tuple[int, int]]:
    """(upright RGB image, the photo's full upright size): JPEGs are decoded at the smallest
    DCT scale whose short side keeps `min_short_side` pixels (never upscaled)."""
    return _load(Path(path), min_short_side, max_pixels)


def _load(path: Path, draft_short_side: int | None, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    try:
        size_bytes = path.stat().st_size
    except FileNotFoundError:
        raise ImageLoadError(path, "not_found", "no such file") from None
    except OSError as exc:
        raise ImageLoadError(path, "unreadable", f"cannot read file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ImageLoadError(path, "unreadable", "is a directory, not an image file")
    if size_bytes == 0:
        raise ImageLoadError(path, "empty", "file is empty (0 bytes)")
    if path.suffix.lower() in {".heic", ".heif"} and not heif_available():
        raise ImageLoadError(
            path, "unsupported_format", "HEIC/HEIF needs the optional extra: pip install 'longteng[heif]'"
        )

    with warnings.catch_warnings():
        # Pillow warns about corrupt EXIF blocks, odd chunks and big images: the loader decides
        # what is a problem (and reports it as an error); its warnings would only leak to stderr.
        warnings.simplefilter("ignore")
        try:
            image = Image.open(path)
        except UnidentifiedImageError:
            if _starts_like_image(path):
                raise ImageLoadError(path, "truncated", "the file starts like a photo but its header is cut short or damaged") from None
            raise ImageLoadError(path, "not_an_image", "not an image in a supported format") from None
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(path, "too_large", f"decompression-bomb guard: {exc}") from None
        except PermissionError:
            raise ImageLoadError(path, "unreadable", "permission denied") from None
        except OSError as exc:
            if "truncat" in str(exc).lower():
                raise ImageLoadError(path, "truncated", f"truncated image header ({exc})") from None
            raise ImageLoadError(path, "unreadable", f"cannot open ({exc})") from None

        width, height = image.size
        if width * height > max_pixels:
            image.close()
            raise ImageLoadError(
                path,
                "too_large",
                f"{width}x{height} = {width * height / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP "
                "decompression-bomb guard",
            )
        if draft_short_side is not None and image.format in ("JPEG", "MPO"):
            # Orientation-agnostic request: the short side keeps >= the requested size.
            image.draft("RGB", (draft_short_side, draft_short_side))
        try:
            image.load()
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(path, "too_large", f"decompression-bomb guard: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            text = str(exc)
            reason = "truncated" if "truncat" in text.lower() else "corrupt"
            raise ImageLoadError(path, reason, f"{reason} image data ({text})") from None
        upright = _apply_exif_orientation(image)
    if upright.size != image.size and upright.size == image.size[::-1]:
        width, height = height, width
    return to_rgb(upright), (width, height)


def _starts_like_image(path: Path) -> bool:
    try:
        return looks_like_image_header(read_header(path))
    except OSError:
        return False


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not cost the photo itself
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB with the right value scaling."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in {"I;16", "I;16L", "I;16B", "I;16N", "I"}:
        # 16-bit (and Pillow's 32-bit container for 16-bit PNGs): scale 0..65535 to 0..255.
        values = np.asarray(image, dtype=np.float64)
        if mode == "I" and values.max(initial=0) <= 255:
            scaled = values
        else:
            scaled = values / 257.0
        grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) <= 1.0:
            values = values * 255.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "CMYK" and image.info.get("icc_profile"):
        converted = _cmyk_with_profile(image)
        if converted is not None:
            return converted
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _ALPHA_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _cmyk_with_profile(image: Image.Image) -> Image.Image | None:
    import io

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        target = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(image, source, target, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None

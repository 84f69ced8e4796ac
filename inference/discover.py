"""Turn what an officer types (files, folders, globs) into the photos to look at, safely.

Rules, shared by ``longteng predict`` and batch scoring:

* An input that names an existing **file** is always used, whatever its extension: the user
  asked for it, so it gets a prediction or an error row from the loader (``notes.txt`` ->
  ``not_an_image``). Something that is neither a regular file nor a folder (a FIFO, a device)
  is refused with ``unreadable``, because opening it could block forever.
* A **folder** is walked recursively. Photos are recognised by extension
  (``longteng.imageio.IMAGE_EXTENSIONS``, any case) and, with ``sniff_extensionless``, files
  without an extension by their first bytes (phones and messengers sometimes drop it). Hidden
  entries (name starting with ``.``: ``.Trash``, macOS ``._IMG_0001.jpg`` resource forks) are
  skipped in walks; name one explicitly to use it.
* An input that does not exist but contains ``*``, ``?`` or ``[`` is a **glob** (``**`` spans
  folders). Each match is treated like a walked entry: folders are walked, files kept only if
  they look like photos.
* Order is stable: inputs in the order given, each folder's entries sorted by the bytes of their
  names (independent of locale), folders descended where they sort. A file reached twice (a
  folder and a file inside it, two links to one file) is yielded once, first position wins.
* Nothing here raises for a bad input. Each problem is yielded as a :class:`DiscoveryError`
  naming the path and a reason key, and the walk goes on:

  ``not_found``     the input does not exist, or a link inside a folder points nowhere
  ``no_match``      a glob matched nothing
  ``no_images``     a folder or glob held no photos at all
  ``unreadable``    a folder cannot be listed (permissions) or an input is not a regular file
  ``symlink_loop``  a link leads back to a folder already being walked

Names are ``str`` as ``os.fsdecode`` gives them: bytes that are not valid UTF-8 become lone
surrogates (``surrogateescape``), so ``os.fsencode(path)`` gives back the exact name.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from longteng.errors import UnusableFile
from longteng.imageio import IMAGE_EXTENSIONS

NOT_FOUND = "not_found"
NO_MATCH = "no_match"
NO_IMAGES = "no_images"
UNREADABLE = "unreadable"
SYMLINK_LOOP = "symlink_loop"

_GLOB_CHARACTERS = frozenset("*?[")
# Leading bytes of the formats Pillow (and pillow-heif) open; enough to tell a photo from a
# text file or an archive without decoding anything.
_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")


# An input or folder entry that gave no photo (yielded, never raised).
DiscoveryError = UnusableFile


@dataclass(frozen=True)
class DiscoveryOptions:
    extensions: frozenset[str] = field(default_factory=lambda: IMAGE_EXTENSIONS)
    sniff_extensionless: bool = False
    include_hidden: bool = False
    report_empty: bool = True  # a folder or glob without photos yields a no_images record


def discover(
    inputs: Iterable[str | os.PathLike], options: DiscoveryOptions = DiscoveryOptions()
) -> Iterator[Path | DiscoveryError]:
    """Yield each photo path (or a :class:`DiscoveryError`) for ``inputs``, in a stable order."""
    seen: set[str] = set()
    for raw in inputs:
        text = os.fsdecode(raw)
        path = Path(text)
        if os.path.lexists(path):
            yield from _explicit(path, options, seen)
        elif _GLOB_CHARACTERS & set(text):
            yield from _glob(text, options, seen)
        else:
            yield DiscoveryError(path, NOT_FOUND, "no such file or folder")


def looks_like_image(path: Path, options: DiscoveryOptions = DiscoveryOptions()) -> bool:
    """By extension, or for an extension-less file (with sniffing on) by its first bytes."""
    suffix = path.suffix.lower()
    if suffix:
        return suffix in options.extensions
    return options.sniff_extensionless and _sniff(path)


def _explicit(path: Path, options: DiscoveryOptions, seen: set[str]) -> Iterator[Path | DiscoveryError]:
    try:
        info = path.stat()
    except FileNotFoundError:
        yield DiscoveryError(path, NOT_FOUND, "symbolic link to a missing target")
        return
    except OSError as exc:
        # ELOOP for a link that points at itself; EACCES for a parent without search permission.
        reason = SYMLINK_LOOP if _is_loop(exc) else UNREADABLE
        yield DiscoveryError(path, reason, f"cannot read ({exc.strerror or exc})")
        return
    if stat.S_ISDIR(info.st_mode):
        yield from _walk_reporting_empty(path, options, seen)
    elif stat.S_ISREG(info.st_mode):
        if _first_visit(path, seen):
            yield path
    else:
        yield DiscoveryError(path, UNREADABLE, "not a regular file (device, pipe or socket)")


def _glob(pattern: str, options: DiscoveryOptions, seen: set[str]) -> Iterator[Path | DiscoveryError]:
    matches = sorted(glob.glob(pattern, recursive=True), key=os.fsencode)
    if not matches:
        yield DiscoveryError(Path(pattern), NO_MATCH, "no file or folder matches this pattern")
        return
    found_any = False
    for match in matches:
        path = Path(match)
        if path.is_dir():
            for found in _walk(path, options, seen):
                found_any = found_any or isinstance(found, Path)
                yield found
        elif path.is_file() and looks_like_image(path, options):
            found_any = True
            if _first_visit(path, seen):
                yield path
    if not found_any and options.report_empty:
        yield DiscoveryError(Path(pattern), NO_IMAGES, "the pattern matches no photos")


def _walk_reporting_empty(root: Path, options: DiscoveryOptions, seen: set[str]) -> Iterator[Path | DiscoveryError]:
    found_any = False
    for found in _walk(root, options, seen):
        found_any = found_any or isinstance(found, Path)
        yield found
    if not found_any and options.report_empty:
        yield DiscoveryError(root, NO_IMAGES, "no photos in this folder")


def _walk(root: Path, options: DiscoveryOptions, seen: set[str]) -> Iterator[Path | DiscoveryError]:
    """Depth-first walk in sorted order with an explicit stack (no recursion limit on deep trees).

    Loops are caught by remembering the (device, inode) of every folder on the current branch:
    a link that leads back to one of them would otherwise recurse forever.
    """
    try:
        root_info = root.stat()
    except OSError as exc:
        yield DiscoveryError(root, UNREADABLE, f"cannot read folder ({exc.strerror or exc})")
        return
    branch = [(root_info.st_dev, root_info.st_ino)]
    listing = _list(root)
    if isinstance(listing, DiscoveryError):
        yield listing
        return
    stack = [iter(listing)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            branch.pop()
            continue
        if entry.name.startswith(".") and not options.include_hidden:
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()  # follows links
            is_file = not is_dir and entry.is_file()
        except OSError as exc:
            yield DiscoveryError(path, SYMLINK_LOOP if _is_loop(exc) else UNREADABLE, f"cannot read ({exc.strerror or exc})")
            continue
        if is_dir:
            try:
                info = entry.stat()
            except OSError as exc:
                yield DiscoveryError(path, UNREADABLE, f"cannot read folder ({exc.strerror or exc})")
                continue
            key = (info.st_dev, info.st_ino)
            if key in branch:
                yield DiscoveryError(path, SYMLINK_LOOP, "link back to a folder already being walked; not followed")
                continue
            listing = _list(path)
            if isinstance(listing, DiscoveryError):
                yield listing
                continue
            branch.append(key)
            stack.append(iter(listing))
        elif is_file:
            if looks_like_image(path, options) and _first_visit(path, seen):
                yield path
        elif path.suffix.lower() in options.extensions:
            # Named like a photo, so the officer expects a row for it; it is a dangling link,
            # or a pipe or device that opening could block on.
            if entry.is_symlink() and not os.path.exists(path):
                yield DiscoveryError(path, NOT_FOUND, "symbolic link to a missing target")
            else:
                yield DiscoveryError(path, UNREADABLE, "not a regular file (device, pipe or socket)")


def _list(folder: Path) -> list[os.DirEntry] | DiscoveryError:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: os.fsencode(entry.name))
    except OSError as exc:
        return DiscoveryError(folder, UNREADABLE, f"cannot list folder ({exc.strerror or exc})")


def _first_visit(path: Path, seen: set[str]) -> bool:
    key = os.path.realpath(path)
    if key in seen:
        return False
    seen.add(key)
    return True


def _sniff(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        # Let the loader name the problem: an unreadable file still gets its error row.
        return True
    if head.startswith(_SIGNATURES):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _is_loop(exc: OSError) -> bool:
    return exc.errno == errno.ELOOP


def filter_globs(
    entries: Iterable[Path | DiscoveryError], include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> Iterator[Path | DiscoveryError]:
    """Keep photos matching any ``include`` glob (all if none) and no ``exclude`` glob.

    A pattern matches the whole path as found or just the file name (``*`` spans folders in
    the former, so ``*/thumbs/*`` and ``*.png`` both do what one expects). Discovery errors
    pass through: a missing input stays reported whatever the filters.
    """
    include, exclude = tuple(include), tuple(exclude)

    def matches(path: Path, patterns: tuple[str, ...]) -> bool:
        text = os.fsdecode(path)
        return any(fnmatch.fnmatchcase(text, p) or fnmatch.fnmatchcase(path.name, p) for p in patterns)

    for entry in entries:
        if isinstance(entry, DiscoveryError) or ((not include or matches(entry, include)) and not matches(entry, exclude)):
            yield entry


def read_list(lines: Iterable[str]) -> Iterator[str]:
    """Inputs from a list file, one per line; blank lines and lines starting with ``#`` skipped."""
    for line in lines:
        line = line.rstrip("\r\n")
        if line.strip() and not line.lstrip().startswith("#"):
            yield line

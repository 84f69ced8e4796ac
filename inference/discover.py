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
  folders). It is the same folder walk, from the pattern's fixed prefix, keeping the entries
  the pattern matches: folders are walked whole, files kept only if they look like photos, and
  loops, pipes, devices and dangling links get the same error rows as in a folder walk.
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
  ``invalid_path``  the name contains a NUL byte (no file can be named so)

Names are ``str`` as ``os.fsdecode`` gives them: bytes that are not valid UTF-8 become lone
surrogates (``surrogateescape``), so ``os.fsencode(path)`` gives back the exact name.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from longteng.errors import UnusableFile
from longteng.imageio import IMAGE_EXTENSIONS, looks_like_image_header, read_header

NOT_FOUND = "not_found"
NO_MATCH = "no_match"
NO_IMAGES = "no_images"
UNREADABLE = "unreadable"
SYMLINK_LOOP = "symlink_loop"
INVALID_PATH = "invalid_path"

_GLOB_CHARACTERS = frozenset("*?[")
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
        if "\0" in text:
            # find -print0 output read line by line, or a damaged list: no file can have this name.
            yield DiscoveryError(Path(text.replace("\0", "\\0")), INVALID_PATH, "the name contains a NUL byte")
        elif os.path.lexists(path):
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
    """A glob is a folder walk from its fixed prefix, keeping what the pattern matches.

    The same walk as for folders, so a glob gets the same loop protection (``dir/**`` over
    links that lead back up), the same error rows (a FIFO or a dangling link named like a
    photo) and the same order as walking the folder would.
    """
    root, matcher = _GlobMatcher.split(pattern)
    found_any = matched_any = False
    if os.path.isdir(root):
        count = _Count()
        # 'dir/**' matches dir itself: all of it
        yield from _walk(root, options, seen, None if matcher.matches(()) else matcher, count)
        matched_any, found_any = matcher.hits > 0, count.photos > 0
    if not matched_any:
        yield DiscoveryError(Path(pattern), NO_MATCH, "no file or folder matches this pattern")
    elif not found_any and options.report_empty:
        yield DiscoveryError(Path(pattern), NO_IMAGES, "the pattern matches no photos")


class _GlobMatcher:
    """Shell-style matching of paths relative to the glob's fixed prefix, one name at a time
    (``fnmatch``: ``*``, ``?`` and ``[...]`` within a name), ``**`` for any number of folders."""

    def __init__(self, segments: tuple[str, ...]) -> None:
        self.segments = segments
        self.hits = 0  # entries matched so far (a match already found by another input still counts)

    @classmethod
    def split(cls, pattern: str) -> tuple[Path, "_GlobMatcher"]:
        segments = pattern.split("/")
        fixed = 0
        while fixed < len(segments) - 1 and not (_GLOB_CHARACTERS & set(segments[fixed])):
            fixed += 1
        prefix = "/".join(segments[:fixed])
        root = Path(prefix) if prefix else Path("/" if pattern.startswith("/") else ".")
        return root, cls(tuple(s for s in segments[fixed:] if s) or ("**",))

    def matches(self, relative: tuple[str, ...]) -> bool:
        matched = _match(relative, self.segments)
        self.hits += matched
        return matched

    def may_hold_matches(self, relative: tuple[str, ...]) -> bool:
        """Could something below the folder ``relative`` match?"""
        for index, name in enumerate(relative):
            if index >= len(self.segments):
                return False
            if self.segments[index] == "**":
                return True
            if not fnmatch.fnmatchcase(name, self.segments[index]):
                return False
        return len(relative) < len(self.segments)


def _match(names: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return not names
    if patterns[0] == "**":
        return any(_match(names[skip:], patterns[1:]) for skip in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], patterns[0]) and _match(names[1:], patterns[1:])


@dataclass
class _Count:
    photos: int = 0  # photo files reached, including those already yielded through another input


def _walk_reporting_empty(root: Path, options: DiscoveryOptions, seen: set[str]) -> Iterator[Path | DiscoveryError]:
    count = _Count()
    yield from _walk(root, options, seen, count=count)
    if not count.photos and options.report_empty:
        yield DiscoveryError(root, NO_IMAGES, "no photos in this folder")


def _walk(
    root: Path, options: DiscoveryOptions, seen: set[str], matcher: "_GlobMatcher | None" = None,
    count: _Count | None = None,
) -> Iterator[Path | DiscoveryError]:
    """Depth-first walk in sorted order with an explicit stack (no recursion limit on deep trees).

    Loops are caught by remembering the (device, inode) of every folder on the current branch:
    a link that leads back to one of them would otherwise recurse forever. With a ``matcher``
    (a glob), only entries it matches are taken (a matching folder whole), and only folders
    that may hold matches are entered.
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
    # (entries, their folder's path relative to root, whether the glob still filters them)
    stack = [(iter(listing), (), matcher is not None)]
    while stack:
        entries, relative_folder, filtering = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            branch.pop()
            continue
        if entry.name.startswith(".") and not options.include_hidden:
            continue
        path = Path(entry.path)
        relative = (*relative_folder, os.fsdecode(entry.name))
        taken = not filtering or matcher.matches(relative)  # type: ignore[union-attr]
        try:
            is_dir = entry.is_dir()  # follows links
            is_file = not is_dir and entry.is_file()
        except OSError as exc:
            yield DiscoveryError(path, SYMLINK_LOOP if _is_loop(exc) else UNREADABLE, f"cannot read ({exc.strerror or exc})")
            continue
        if not taken and not (is_dir and matcher.may_hold_matches(relative)):  # type: ignore[union-attr]
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
            stack.append((iter(listing), relative, not taken))
        elif not taken:
            continue
        elif is_file and looks_like_image(path, options):
            if count is not None:
                count.photos += 1
            if _first_visit(path, seen):
                yield path
        elif is_file:
            continue
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
        head = read_header(path)
    except OSError:
        # Let the loader name the problem: an unreadable file still gets its error row.
        return True
    return looks_like_image_header(head)


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

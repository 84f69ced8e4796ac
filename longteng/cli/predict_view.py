"""How `longteng predict` shows its rows: a coloured table, JSON Lines or CSV (schema in
longteng.inference.records)."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from longteng.cli import console
from longteng.inference.records import CSV_FIELDS, to_csv_row, to_json_line

VERDICT_STYLES = {"GENUINE": "bold green", "COUNTERFEIT": "bold red", "REFER": "bold yellow", "ERROR": "bold magenta"}


class JsonLinesWriter:
    """One object per line, flushed at once so a long run can be followed with `tail -f`."""

    def write(self, record: Mapping[str, Any]) -> None:
        sys.stdout.write(to_json_line(record) + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        sys.stdout.flush()


class CsvWriter:
    """RFC 4180 rows on stdout's bytes: UTF-8 with surrogateescape, so a file name's raw
    bytes come out unchanged, and no newline translation inside quoted fields."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._stream = io.TextIOWrapper(
            sys.stdout.buffer, encoding="utf-8", errors="surrogateescape", newline="", write_through=True
        )
        self._writer = csv.writer(self._stream)
        self._writer.writerow(CSV_FIELDS)

    def write(self, record: Mapping[str, Any]) -> None:
        self._writer.writerow(to_csv_row(record))

    def close(self) -> None:
        self._stream.flush()
        self._stream.detach()  # leave sys.stdout's buffer open for whoever writes next


class TableWriter:
    """Collects rows and prints one table at the end."""

    def __init__(self, *, items: bool, show_unknown: bool, show_explain: bool) -> None:
        self._records: list[Mapping[str, Any]] = []
        self._items = items
        self._show_unknown = show_unknown
        self._show_explain = show_explain
        self._encoding = console.out().encoding or "utf-8"

    def write(self, record: Mapping[str, Any]) -> None:
        self._records.append(record)

    def close(self) -> None:
        if self._records:
            console.out().print(self._table())

    def _show(self, text: str | None) -> str:
        return display_text(text, self._encoding)

    def _table(self) -> Table:
        table = Table(show_lines=False, highlight=False)
        table.add_column("Item" if self._items else "Photo", overflow="fold")
        table.add_column("Verdict", no_wrap=True)
        table.add_column("Product", no_wrap=True)
        table.add_column("Confidence", justify="right", no_wrap=True)
        table.add_column("Top classes / problem", overflow="fold")
        if self._show_unknown:
            table.add_column("Unknown", justify="right")
        if self._show_explain:
            table.add_column("Heatmap", overflow="fold")
        for record in self._records:
            table.add_row(*self._cells(record))
        return table

    def _cells(self, record: Mapping[str, Any]) -> list[Text]:
        if record["kind"] == "error":
            name = _file_cell(record["path"], self._encoding) if record["path"] is not None else Text(self._show(record["item"]))
            cells = [
                name, Text("ERROR", style=VERDICT_STYLES["ERROR"]), Text(""), Text(""),
                Text(f"{record['error_reason']}: {self._show(record['error_detail'])}", style="magenta"),
            ]
            return cells + [Text("")] * (self._show_unknown + self._show_explain)
        verdict = record["verdict"]
        label = f"{verdict} ({record['refer_reason']})" if record["refer_reason"] else verdict
        details = "\n".join(f"{_percent(entry['probability'])} {entry['class']}" for entry in record["top_classes"][:2])
        if record["kind"] == "item":
            photos = record["photos"]
            details += f"\n{len(photos)} photo{'s' * (len(photos) != 1)}; decisive: {self._show(record['decisive_photo'])}"
        if record.get("items_in_photo") is not None:
            found = record["items_in_photo"]
            details += f"\n{record['item_count']} item{'s' * (record['item_count'] != 1)} found"
            for number, item in enumerate(found, start=1):
                centre = " ".join(f"{sum(c) / len(c):.0f}" for c in zip(*item["box"]))
                details += f"\n  #{number} {item['verdict']} {_percent(item['confidence'])} at ({centre})"
        cells = [
            Text(self._show(record["item"])) if record["kind"] == "item" else _file_cell(record["path"], self._encoding),
            Text(label, style=VERDICT_STYLES[verdict]),
            Text(record["product"] or ""),
            Text(_percent(record["confidence"])),
            Text(details),
        ]
        if self._show_unknown:
            score = record["unknown_score"]
            flag = " unknown" if record["unknown"] else ""
            cells.append(Text("-" if score is None else f"{score:.3g}{flag}", style="yellow" if flag else ""))
        if self._show_explain:
            if record["kind"] == "item":
                written = [self._show(os.path.basename(photo["explain"])) for photo in record["photos"] if photo["explain"]]
            else:
                written = [self._show(os.path.basename(record["explain"]))] if record["explain"] else []
            cells.append(Text("\n".join(written)))
        return cells


def print_summary(records: Sequence[Mapping[str, Any]], *, items: bool) -> None:
    """One line on stderr: how many verdicts of each kind and how many failures."""
    verdicts = Counter(record["verdict"] for record in records if record["kind"] != "error")
    failures = sum(record["kind"] == "error" for record in records)
    decided = sum(verdicts.values())
    noun = "item" if items else "photo"
    parts = ", ".join(f"{verdicts[name]} {name}" for name in ("GENUINE", "COUNTERFEIT", "REFER") if verdicts[name])
    line = f"{decided} {noun}{'s' * (decided != 1)}" + (f": {parts}" if parts else "")
    if failures:
        line += f"; {failures} failed (error rows above)"
    console.info(line)


def display_text(text: str | None, encoding: str = "utf-8") -> str:
    """Printable form of a name: undecodable bytes as \\xNN, control characters escaped, and
    characters the terminal's ``encoding`` cannot show as \\uXXXX."""
    if text is None:
        return ""
    try:
        raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name could have produced
        raw = text.encode("utf-8", "backslashreplace").decode("ascii")
    printable = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in raw)
    try:
        return printable.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding name Python does not know: stay on the safe side
        return printable.encode("ascii", "backslashreplace").decode("ascii")


def _file_cell(path: str, encoding: str) -> Text:
    """The file name first (what the officer scans for), its folder dimmed below."""
    folder, _, name = path.rpartition(os.sep)
    cell = Text(display_text(name, encoding), style="bold")
    if folder:
        cell.append("\n" + display_text(folder, encoding), style="dim")
    return cell


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"

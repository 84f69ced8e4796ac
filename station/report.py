"""Evidence reports per case, for right holders and courts: HTML and PDF.

The report's content is one JSON document (``case_report``): the case, every item with its
photos (the SHA-256 of each photo file *as it is on disk now*, beside the one recorded at
upload), verdicts, heatmaps, expert decisions, times, the officer, and the model's version
and card summary. Its digest is the SHA-256 of that document in canonical form (sorted keys,
no spaces), printed on every page: change a photo, a verdict or a review and the digest
changes; anyone can recompute it from ``/cases/ID/report.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
from html import escape
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from longteng.data.layout import sha256_file
from longteng.station.db import User, now

if TYPE_CHECKING:
    from longteng.station.service import Station

_PHOTO_FIELDS = ("photo_id", "filename", "item", "sha256", "uploaded_at", "verdict", "product", "confidence",
                 "counterfeit_score", "refer_reason", "unknown", "product_box", "evidence", "error_reason", "error_detail", "review")


def case_report(station: "Station", user: User, case_id: str) -> dict[str, Any]:
    case = station.case(user, case_id)
    metadata = station.scorer.metadata
    items = []
    for item in case["items"]:
        photos = []
        for photo in item["photos"]:
            stored = station.photo_file(user, photo["photo_id"], "image")
            on_disk = sha256_file(stored) if stored.exists() else None
            photos.append({
                **{key: photo.get(key) for key in _PHOTO_FIELDS},
                "sha256_on_disk": on_disk, "intact": on_disk == photo["sha256"],
                "image_url": photo["image_url"], "heatmap_url": photo["heatmap_url"],
            })
        items.append({"item": item["item"], "verdict": item["verdict"], "photos": photos})
    content = {
        "case": {key: case[key] for key in ("id", "name", "container", "notes", "officer", "created_at")},
        "items": items,
        "model": {
            "version": metadata.model_version, "classes": metadata.decision_classes,
            "operating_point": metadata.operating_point.to_dict(),
            "card": {key: metadata.provenance.get(key) for key in ("backbone", "code_version", "export_date", "manifest_hash", "metrics")},
        },
    }
    return {"content": content, "digest": digest(content), "generated_at": now(), "generated_by": user.name}


def digest(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def report_html(report: dict[str, Any]) -> str:
    content = report["content"]
    case = content["case"]
    sections = []
    for item in content["items"]:
        photos = []
        for p in item["photos"]:
            review = p["review"]
            photos.append(
                f"<tr><td><img src='{escape(p['image_url'])}' width=220>"
                + (f"<br><img src='{escape(p['heatmap_url'])}' width=220>" if p["heatmap_url"] else "")
                + f"</td><td><b class='{escape(str(p['verdict']))}'>{escape(str(p['verdict'] or p['error_reason']))}</b><br>"
                f"product {escape(str(p['product']))}, confidence {escape(_percent(p['confidence']))}"
                + (f", {escape(p['refer_reason'])}" if p["refer_reason"] else "")
                + f"<br>file {escape(p['filename'])}, uploaded {escape(p['uploaded_at'])}<br>"
                f"<code>sha256 {escape(p['sha256'])}</code>"
                + ("" if p["intact"] else "<br><b class=COUNTERFEIT>the stored file no longer matches this hash</b>")
                + (f"<br>expert {escape(review['expert'])}: <b>{escape(review['decision'])}</b> ({escape(review['at'])}) "
                   f"{escape(review['note'])}" if review else "<br>no expert review")
                + "</td></tr>"
            )
        sections.append(f"<h2>{escape(item['item'])}: {escape(str(item['verdict']))}</h2><table>{''.join(photos)}</table>")
    model = content["model"]
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>Evidence report, case {escape(case['id'])}</title>
<style>body{{font-family:serif;max-width:52rem;margin:2rem auto}}td{{vertical-align:top;padding:.4rem}}
.COUNTERFEIT{{color:#b3261e}}.GENUINE{{color:#1f7a3a}}.REFER{{color:#a15c00}}code{{font-size:.8rem}}</style></head><body>
<h1>Evidence report</h1><p>Case <b>{escape(case['id'])}</b> {escape(case['name'] or '')} · container {escape(case['container'] or '-')}
· officer {escape(case['officer'] or '')} · opened {escape(case['created_at'])}</p>
<p>Model {escape(model['version'])} (backbone {escape(str(model['card'].get('backbone')))}, longteng {escape(str(model['card'].get('code_version')))},
exported {escape(str(model['card'].get('export_date')))}; training data manifest {escape(str(model['card'].get('manifest_hash')))}).</p>
{''.join(sections) or '<p>No photos.</p>'}
<hr><p>Generated {escape(report['generated_at'])} for {escape(report['generated_by'])}.<br>
Report digest (SHA-256 of the canonical JSON at /cases/{escape(case['id'])}/report.json): <code>{escape(report['digest'])}</code></p>
</body></html>"""


def report_pdf(station: "Station", report: dict[str, Any]) -> bytes:
    """The same report as a PDF: A4 pages drawn with Pillow (no browser or PDF library needed)."""
    pages = _PdfPages()
    content = report["content"]
    case = content["case"]
    pages.text(f"Evidence report - case {case['id']} {case['name'] or ''}", 34)
    pages.text(f"Container {case['container'] or '-'} | officer {case['officer']} | opened {case['created_at']}")
    pages.text(f"Model {content['model']['version']} ({content['model']['card'].get('backbone')})")
    pages.text(f"Digest {report['digest']}", 18)
    for item in content["items"]:
        pages.text(f"{item['item']}: {item['verdict']}", 28)
        for p in item["photos"]:
            row = station.db.one("SELECT stored, heatmap FROM photos WHERE id = ?", p["photo_id"])
            images = [station.photo_dir / row["stored"]]
            if row["heatmap"]:
                images.append(station.heatmap_dir / row["heatmap"])
            pages.images(images)
            pages.text(f"{p['verdict'] or p['error_reason']}  product {p['product']}  confidence {_percent(p['confidence'])}"
                       + (f"  ({p['refer_reason']})" if p["refer_reason"] else ""))
            pages.text(f"file {p['filename']}  uploaded {p['uploaded_at']}", 18)
            pages.text(f"sha256 {p['sha256']}" + ("" if p["intact"] else "  (STORED FILE CHANGED)"), 18)
            review = p["review"]
            pages.text(f"expert {review['expert']}: {review['decision']} {review['note']}" if review else "no expert review", 18)
    pages.text(f"Generated {report['generated_at']} for {report['generated_by']}", 18)
    return pages.pdf(f"digest {report['digest']}")


def _percent(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, float) else "-"


class _PdfPages:
    WIDTH, HEIGHT, MARGIN = 1240, 1754, 80  # A4 at 150 dpi

    def __init__(self) -> None:
        self.pages: list[Image.Image] = []
        self._new()

    def _new(self) -> None:
        self.page = Image.new("RGB", (self.WIDTH, self.HEIGHT), "white")
        self.draw = ImageDraw.Draw(self.page)
        self.y = self.MARGIN
        self.pages.append(self.page)

    def _room(self, height: int) -> None:
        if self.y + height > self.HEIGHT - self.MARGIN - 40:
            self._new()

    def text(self, line: str, size: int = 22) -> None:
        font = ImageFont.load_default(size=size)
        self._room(size + 12)
        self.draw.text((self.MARGIN, self.y), line[:110], fill="black", font=font)
        self.y += size + 12

    def images(self, paths: list) -> None:
        height = 420
        self._room(height + 10)
        x = self.MARGIN
        for path in paths:
            try:
                with Image.open(path) as image:
                    image.thumbnail((520, height))
                    self.page.paste(image.convert("RGB"), (x, self.y))
                    x += image.width + 20
            except OSError:
                self.draw.text((x, self.y), "(image unreadable)", fill="red")
        self.y += height + 10

    def pdf(self, footer: str) -> bytes:
        font = ImageFont.load_default(size=16)
        for number, page in enumerate(self.pages, start=1):
            ImageDraw.Draw(page).text((self.MARGIN, self.HEIGHT - self.MARGIN), f"page {number}/{len(self.pages)}  {footer}",
                                      fill="gray", font=font)
        out = io.BytesIO()
        self.pages[0].save(out, "PDF", resolution=150.0, save_all=True, append_images=self.pages[1:])
        return out.getvalue()

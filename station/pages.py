"""The station's HTML: small, mobile-first pages served by the app itself (no CDN, no build
step), with one script for uploads and reviews. Every value is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from longteng.station.db import User

_STYLE = """
*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f2;color:#1b1b1b}
header{background:#12355b;color:#fff;padding:.7rem 1rem;display:flex;justify-content:space-between;align-items:center}
header a,header button{color:#fff;background:none;border:0;font-size:1rem}
main{padding:1rem;max-width:46rem;margin:auto}.card{background:#fff;border-radius:.6rem;padding:1rem;margin:.8rem 0;
box-shadow:0 1px 3px #0002}input,textarea,button,select{font-size:1.05rem;padding:.6rem;width:100%;margin:.3rem 0}
button.primary{background:#12355b;color:#fff;border:0;border-radius:.4rem}label.camera{display:block;background:#1f7a3a;
color:#fff;text-align:center;padding:1rem;border-radius:.5rem;font-size:1.2rem}label.camera input{display:none}
.verdict{font-weight:700;font-size:1.3rem}.GENUINE{color:#1f7a3a}.COUNTERFEIT{color:#b3261e}.REFER{color:#a15c00}
.error{color:#b3261e}img{max-width:100%;border-radius:.4rem}.photos{display:grid;gap:.6rem;grid-template-columns:1fr}
@media(min-width:40rem){.photos{grid-template-columns:1fr 1fr}}small{color:#555}
"""


def _page(title: str, body: str, user: User | None = None, csrf: str = "") -> str:
    bar = "" if user is None else (
        f'<span>{escape(user.name)} ({escape(user.role)})</span>'
        f'<form method="post" action="/logout" data-csrf-form><button>Log out</button></form>'
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} · longteng</title><style>{_STYLE}</style></head>"
        f'<body data-csrf="{escape(csrf)}"><header><a href="/"><b>longteng</b></a>{bar}</header>'
        f"<main>{body}</main><script src=/static/station.js></script></body></html>"
    )


def login(csrf: str, failed: bool = False) -> str:
    message = '<p class=error id=login-error>Wrong name or password.</p>' if failed else ""
    return _page("Log in", f"""<div class=card><h1>Log in</h1>{message}
<form method=post action=/login><input type=hidden name=csrf value="{escape(csrf)}">
<input name=name id=name placeholder="Name" autocomplete=username required>
<input name=password id=password type=password placeholder="Password" autocomplete=current-password required>
<button class=primary id=login>Log in</button></form></div>""")


def home(user: User, csrf: str, cases: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<li><a href="/cases/{escape(c["id"])}">{escape(c["name"] or c["id"])}</a> '
        f'<small>{escape(c["container"] or "")} · {escape(c["created_at"])} · {escape(c["officer"] or "")}</small></li>'
        for c in cases
    ) or "<li>No cases yet.</li>"
    opener = "" if user.role not in ("officer", "admin") else """<div class=card><h2>New case</h2>
<input id=case-name placeholder="Shipment or container (optional)"><input id=case-container placeholder="Container number (optional)">
<button class=primary id=new-case>Open case</button></div>"""
    review = '<p><a href="/review">Review queue</a></p>' if user.role in ("expert", "admin") else ""
    if user.role == "admin":
        review += '<p><a href="/admin">Accounts</a></p>'
    return _page("Cases", f"{opener}{review}<div class=card><h2>Cases</h2><ul>{rows}</ul></div>", user, csrf)


def _evidence(entry: dict[str, Any]) -> str:
    """One line an expert can check in seconds, per detector that fired."""
    if entry.get("detector") == "text":
        return f'<p class="evidence">read {escape(str(entry.get("read")))}, registered {escape(str(entry.get("expected")))}</p>'
    if entry.get("detector") == "novelty":
        return (
            f'<p class="evidence">unlike every genuine {escape(str(entry.get("product")))} reference: novelty '
            f'{escape(str(entry.get("novelty")))} (threshold {escape(str(entry.get("threshold")))})</p>'
        )
    if entry.get("detector") == "aligned":
        return (
            f'<p class="evidence">differs from the genuine {escape(str(entry.get("product")))} references, place by place: '
            f'score {escape(str(entry.get("score")))} (threshold {escape(str(entry.get("threshold")))})</p>'
        )
    if entry.get("detector") == "artwork":
        return f'<p class="evidence">{escape(str(entry.get("description")))}</p>'
    return ""


def _photo(photo: dict[str, Any], reviewing: bool = False) -> str:
    if photo.get("error_reason"):
        outcome = f'<p class=error>{escape(photo["error_reason"])}: {escape(photo.get("error_detail") or "")}</p>'
    else:
        verdict = photo.get("verdict") or "pending"
        confidence = photo.get("confidence")
        outcome = (
            f'<p class="verdict {escape(verdict)}" data-verdict="{escape(verdict)}">{escape(verdict)}</p>'
            f'<p>{escape(str(photo.get("product") or ""))}'
            + (f" · confidence {confidence:.0%}" if isinstance(confidence, float) else "")
            + (f' · {escape(photo["refer_reason"])}' if photo.get("refer_reason") else "")
            + "</p>"
            + "".join(_evidence(e) for e in photo.get("evidence") or [])
        )
    image = photo.get("heatmap_url") or photo["image_url"]
    review = photo.get("review")
    decided = "" if not review else (
        f'<p>Expert <b>{escape(review["expert"])}</b>: <span class="{escape(review["decision"])}">{escape(review["decision"])}</span>'
        f' <small>{escape(review["note"])}</small></p>'
    )
    form = "" if not reviewing else f"""<textarea data-note placeholder="Note"></textarea>
<button data-review="GENUINE" data-photo="{photo['photo_id']}">Genuine</button>
<button data-review="COUNTERFEIT" data-photo="{photo['photo_id']}">Counterfeit</button>"""
    return (f'<div class=card data-photo-card="{photo["photo_id"]}"><img src="{escape(image)}" alt="photo {photo["photo_id"]}">'
            f'<small>{escape(photo["filename"])} · {escape(photo["item"])}</small>{outcome}{decided}{form}</div>')


def case(user: User, csrf: str, data: dict[str, Any]) -> str:
    items = "".join(
        f'<div class=card><h3>{escape(item["item"])} '
        f'<span class="verdict {escape(item["verdict"] or "")}">{escape(item["verdict"] or "")}</span></h3>'
        f'<div class=photos>{"".join(_photo(p, user.role in ("expert", "admin")) for p in item["photos"])}</div></div>'
        for item in data["items"]
    )
    upload = "" if user.role == "expert" else f"""<div class=card><h2>Add photos</h2>
<input id=item placeholder="Item (e.g. phone 1)" value="item-1">
<label class=camera>Take photos<input type=file id=photos accept="image/*" capture=environment multiple
 data-case="{escape(data['id'])}"></label><div id=results></div></div>"""
    title = escape(data["name"] or data["id"])
    return _page(f"Case {data['id']}", f"""<h1>{title}</h1><p><small>{escape(data['container'] or '')} · officer
{escape(data['officer'] or '')} · <a href="/cases/{escape(data['id'])}/report">evidence report</a> ·
<a href="/cases/{escape(data['id'])}/report.pdf">PDF</a></small></p>{upload}{items}""", user, csrf)


def admin(user: User, csrf: str, users: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<li>{escape(u["name"])} <small>{escape(u["role"])} · {escape(u["created_at"])}</small>'
        + ("" if u["name"] == user.name or u["role"] == "removed" else
           f' <button data-remove-user="{escape(u["name"])}">Remove</button>')
        + "</li>"
        for u in users
    )
    return _page("Accounts", f"""<div class=card><h2>Accounts</h2><ul>{rows}</ul></div>
<div class=card><h2>New account</h2><input id=new-name placeholder="Name"><select id=new-role>
<option>officer</option><option>expert</option><option>admin</option></select>
<input id=new-password type=password placeholder="Password (8 characters or more)">
<button class=primary id=add-user>Add</button><p id=new-token></p></div>""", user, csrf)


def review(user: User, csrf: str, queue: list[dict[str, Any]]) -> str:
    cards = "".join(_photo(p, reviewing=True) for p in queue) or "<div class=card>Nothing to review.</div>"
    return _page("Review", f"<h1>Referred photos ({len(queue)})</h1>{cards}", user, csrf)


SCRIPT = r"""
const csrf = document.body.dataset.csrf;
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
document.querySelectorAll("form[data-csrf-form]").forEach(f => f.addEventListener("submit", async e => {
  e.preventDefault(); await fetch(f.action, {method: "POST", headers: {"X-CSRF-Token": csrf}}); location = "/login";
}));
const opener = document.getElementById("new-case");
if (opener) opener.addEventListener("click", async () => {
  const body = {name: document.getElementById("case-name").value || null,
                container: document.getElementById("case-container").value || null};
  const r = await fetch("/api/v1/cases", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                                          body: JSON.stringify(body)});
  const data = await r.json();
  if (r.ok) location = "/cases/" + data.id; else alert(data.error);
});
const picker = document.getElementById("photos");
if (picker) picker.addEventListener("change", async () => {
  const results = document.getElementById("results");
  for (const file of picker.files) {
    const line = document.createElement("div"); line.className = "card"; line.textContent = file.name + ": checking…";
    results.prepend(line);
    const form = new FormData(); form.append("photo", file); form.append("item", document.getElementById("item").value);
    try {
      const r = await fetch(`/api/v1/cases/${picker.dataset.case}/photos`, {method: "POST", headers: {"X-CSRF-Token": csrf}, body: form});
      const p = await r.json();
      if (p.error) { line.innerHTML = `<p class=error>${esc(file.name)}: ${esc(p.error)}</p>`; continue; }
      if (p.error_reason) { line.innerHTML = `<p class=error data-error="${esc(p.error_reason)}">${esc(file.name)}: ${esc(p.error_reason)} (${esc(p.error_detail)})</p>`; continue; }
      line.innerHTML = `<img src="${esc(p.heatmap_url || p.image_url)}" alt="heatmap"><p class="verdict ${esc(p.verdict)}" data-verdict="${esc(p.verdict)}">${esc(p.verdict)}</p>` +
        `<p>${esc(p.product)} · confidence ${Math.round(100 * p.confidence)}%${p.refer_reason ? " · " + esc(p.refer_reason) : ""}</p>`;
    } catch (err) { line.innerHTML = `<p class=error>${esc(file.name)}: upload failed (${esc(err)}); try again</p>`; }
  }
});
const adder = document.getElementById("add-user");
if (adder) adder.addEventListener("click", async () => {
  const body = {name: document.getElementById("new-name").value, role: document.getElementById("new-role").value,
                password: document.getElementById("new-password").value};
  const r = await fetch("/api/v1/users", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                                          body: JSON.stringify(body)});
  const data = await r.json();
  document.getElementById("new-token").textContent = r.ok
    ? `Added ${data.name}. API token (shown only now): ${data.token}` : data.error;
});
document.querySelectorAll("button[data-remove-user]").forEach(b => b.addEventListener("click", async () => {
  if (!confirm(`Remove ${b.dataset.removeUser}?`)) return;
  const r = await fetch(`/api/v1/users/${encodeURIComponent(b.dataset.removeUser)}`, {method: "DELETE", headers: {"X-CSRF-Token": csrf}});
  if (r.ok) location.reload(); else alert((await r.json()).error);
}));
document.querySelectorAll("button[data-review]").forEach(b => b.addEventListener("click", async () => {
  const card = b.closest("[data-photo-card]");
  const r = await fetch(`/api/v1/photos/${b.dataset.photo}/review`, {method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
    body: JSON.stringify({decision: b.dataset.review, note: card.querySelector("[data-note]").value})});
  if (r.ok) card.innerHTML = `<p>Recorded: ${esc(b.dataset.review)}</p>`; else alert((await r.json()).error);
}));
"""

__all__ = ["admin", "login", "home", "case", "review", "SCRIPT"]

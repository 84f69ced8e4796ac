"""Benchmark of `longteng score`: throughput against the machine's limit and a PyTorch baseline,
Dask overhead, and peak memory as the archive grows.

Not a test. Generates N phone-size photos (4000x3000 JPEG q90) and N small ones (640x480) of
fictional items into a temporary folder, then measures, for each set:

* **score local / dask**: wall time of the real `longteng score` command (a subprocess), as
  images/s end to end and *steady* (after subtracting the fixed cost of a 1-photo run: Python
  start, model load, pool start, file assembly).
* **limit** = 1 / (D + M): D = wall seconds per photo of decoding + preprocessing alone with
  every core busy (process pool, same loader and draft mode), M = wall seconds per photo of
  onnxruntime inference alone on pre-made tensors (same batch size, default threads). No
  pipeline can beat doing both jobs back to back on all cores; targets: steady >= 0.85 x limit.
  For a two-stage model M = M_glance + M_focus (each stage alone on its own inputs), plus O,
  the text check's OCR of the crops on all cores (one process per core, one thread each, as
  score's workers read) for a model that reads print; cutting the crops (C) is reported
  beside it and not counted in the limit.
* **baseline**: what a user would write: torchvision ImageFolder + DataLoader(num_workers=2)
  + the same network in eager PyTorch (loaded from the checkpoint); target score >= 3x it on
  phone-size photos.
* **peak RSS** of the whole `longteng score` process tree on N/2 and N phone photos: it should
  stay flat as the archive grows.
* **opened boxes** (`--photos DIR`, e.g. `data synth --items-per-photo 1-6` output, with a model
  that finds items): the set `photos` is the first N JPEGs under DIR instead of generated ones.
  The focus stage runs once per item found, so M_focus is per photo (the items' crops of each
  photo), and the mean count of items found per photo is reported with it.

Usage (prints a Markdown table, writes JSON to bench/results/):

    .venv/bin/python bench/bench_score.py --n 100 --model runs/demo/model.onnx --checkpoint runs/demo/best.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"phone": (4000, 3000), "small": (640, 480)}
TARGET_LIMIT_RATIO = 0.85
TARGET_BASELINE_RATIO = 3.0

BASELINE_SCRIPT = """
import sys, time
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from longteng.model.checkpoint import build_model, load_checkpoint

checkpoint = load_checkpoint(sys.argv[1])
network = build_model(checkpoint)
spec = checkpoint.preprocess
transform = transforms.Compose([
    transforms.Resize((spec.input_size, spec.input_size)),
    transforms.ToTensor(),
    transforms.Normalize(spec.mean, spec.std),
])
loader = DataLoader(datasets.ImageFolder(sys.argv[2], transform=transform), batch_size=int(sys.argv[3]), num_workers=2)
start = time.perf_counter()
count = 0
with torch.inference_mode():
    for images, _ in loader:
        probabilities = torch.softmax(network(images) / checkpoint.temperature, dim=1)
        count += len(images)
print(count, time.perf_counter() - start)
"""


BASELINE_TWO_STAGE_SCRIPT = """
import sys, time
from pathlib import Path
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from longteng.model.checkpoint import build_two_stage, focus_spec_of
from longteng.focus import GlanceFrame, box_from_maps, decode_for_focus, focus_crop, glance_pixels
from longteng.model.checkpoint import load_checkpoint
from longteng.preprocess import normalize

checkpoint = load_checkpoint(sys.argv[1])
network = build_two_stage(checkpoint)
spec, focus = checkpoint.preprocess, focus_spec_of(checkpoint)

class Photos(Dataset):
    def __init__(self, root):
        self.files = sorted(Path(root).rglob("*.jpg"))
    def __len__(self):
        return len(self.files)
    def __getitem__(self, i):
        photo = decode_for_focus(self.files[i], focus)
        return np.asarray(photo.image), glance_pixels(photo, spec)

loader = DataLoader(Photos(sys.argv[2]), batch_size=None, num_workers=2)
start = time.perf_counter()
count = 0
with torch.inference_mode():
    for image, glance in loader:
        image, glance = image.numpy(), glance.numpy()
        objectness, up = network.glance(torch.from_numpy(normalize(glance[None], spec)))
        frame = GlanceFrame.of((image.shape[1], image.shape[0]), spec)
        box = box_from_maps(torch.sigmoid(objectness)[0].numpy(), up[0].numpy(), frame, spec.input_size)
        from PIL import Image
        crop = focus_crop(Image.fromarray(image), box, focus, spec.pad_color)
        logits = network.focus(torch.from_numpy(normalize(crop[None], spec)))[0]
        probabilities = torch.softmax(logits / checkpoint.temperature, dim=1)
        count += 1
print(count, time.perf_counter() - start)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="photos per set (phone-size and small)")
    parser.add_argument("--model", type=Path, default=ROOT / "runs/demo/model.onnx")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs/demo/best.pt", help="for the PyTorch baseline")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sets", default="phone,small")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--scratch", type=Path, default=None, help="reuse/keep generated photos here")
    parser.add_argument("--photos", type=Path, default=None,
                        help="a folder of real photos (e.g. opened boxes): adds the set 'photos', its first N JPEGs")
    args = parser.parse_args()
    if not args.model.is_file():
        sys.exit(f"{args.model}: no model (train and export one, or pass --model)")
    cores = os.cpu_count() or 1
    scratch_holder = None
    if args.scratch is None:
        scratch_holder = tempfile.TemporaryDirectory(prefix="bench_score_")
        scratch = Path(scratch_holder.name)
    else:
        scratch = args.scratch
    results: dict = {"n": args.n, "cores": cores, "batch_size": args.batch_size, "model": str(args.model), "sets": {}}
    try:
        single = scratch / "single"
        _generate(single / "photos" / "a", 1, SIZES["small"], seed=10**6)
        names = [name for name in args.sets.split(",") if name] + (["photos"] if args.photos else [])
        for name in names:
            root = scratch / name
            if name == "photos":
                _link_photos(args.photos, root / "photos", args.n)
            else:
                _generate(root / "photos" / "a", args.n // 2, SIZES[name], seed=0)
                _generate(root / "photos" / "b", args.n - args.n // 2, SIZES[name], seed=args.n // 2)
            files = sorted((root / "photos").rglob("*.jpg"))
            entry: dict = {"photos": len(files), "mean_file_kb": sum(f.stat().st_size for f in files) / len(files) / 1e3}
            decode_s, prepared = _decode_alone(files, args.model, cores)
            infer_s, parts = _infer_alone(prepared, args.model, args.batch_size, cores)
            del prepared
            entry["D_ms"], entry["M_ms"] = 1000 * decode_s / len(files), 1000 * infer_s / len(files)
            entry.update(parts)
            entry["limit_img_s"] = len(files) / (decode_s + infer_s)
            fixed, _ = _score(single, scratch / "out" / f"single-{name}.csv", args, "local")
            wall, rss = _score(root, scratch / "out" / f"{name}.csv", args, "local")
            entry.update(local_wall_s=wall, local_img_s=len(files) / wall, fixed_s=fixed,
                         local_steady_img_s=(len(files) - 1) / max(wall - fixed, 1e-9), local_peak_rss_mb=rss)
            entry["ratio_to_limit"] = entry["local_steady_img_s"] / entry["limit_img_s"]
            if not args.skip_dask:
                dask_fixed, _ = _score(single, scratch / "out" / f"single-{name}.parquet", args, "dask")
                dask_wall, dask_rss = _score(root, scratch / "out" / f"{name}.parquet", args, "dask")
                entry.update(dask_wall_s=dask_wall, dask_img_s=len(files) / dask_wall, dask_fixed_s=dask_fixed,
                             dask_steady_img_s=(len(files) - 1) / max(dask_wall - dask_fixed, 1e-9),
                             dask_peak_rss_mb=dask_rss)
                entry["dask_overhead"] = entry["local_steady_img_s"] / entry["dask_steady_img_s"]
            if args.checkpoint.is_file():
                count, loop_s, baseline_wall = _baseline(root, args)
                entry.update(baseline_wall_s=baseline_wall, baseline_img_s=count / baseline_wall,
                             baseline_steady_img_s=count / loop_s)
                entry["vs_baseline"] = entry["local_steady_img_s"] / entry["baseline_steady_img_s"]
            if name == "phone":
                _, half_rss = _score(root / "photos" / "a", scratch / "out" / "half.csv", args, "local")
                entry.update(peak_rss_half_mb=half_rss, peak_rss_full_mb=rss)
            results["sets"][name] = entry
    finally:
        if scratch_holder is not None:
            scratch_holder.cleanup()
    _report(results)
    return 0


def _link_photos(source: Path, folder: Path, count: int) -> None:
    """The first `count` JPEGs under `source`, linked into two halves (a, b) like the generated sets."""
    files = sorted(source.rglob("*.jpg"))[:count]
    if not files:
        sys.exit(f"{source}: no .jpg photos")
    for index, path in enumerate(files):
        target = folder / ("a" if index < len(files) // 2 else "b") / f"IMG_{index:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(path.resolve())


def _generate(folder: Path, count: int, size: tuple[int, int], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    missing = [seed + i for i in range(count) if not (folder / f"IMG_{seed + i:05d}.jpg").exists()]
    if missing:
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_photo, [folder] * len(missing), missing, [size] * len(missing), chunksize=4))


def _photo(folder: Path, index: int, size: tuple[int, int]) -> None:
    """A fictional item on a table: gradient, box, label and sensor noise; unique per index."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(index)
    width, height = size
    small = Image.new("RGB", (width // 4, height // 4), tuple(int(v) for v in rng.integers(90, 200, 3)))
    draw = ImageDraw.Draw(small)
    w, h = small.size
    box = (int(w * rng.uniform(0.15, 0.3)), int(h * rng.uniform(0.15, 0.3)), int(w * rng.uniform(0.65, 0.85)), int(h * rng.uniform(0.65, 0.85)))
    draw.rectangle(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw.rectangle((box[0] + w // 20, box[1] + h // 20, box[0] + w // 5, box[1] + h // 8), fill=(240, 240, 235))
    draw.text((box[0] + w // 18, box[1] + h // 16), f"LOT {index:05d}", fill=(20, 20, 20))
    image = np.asarray(small.resize(size, Image.Resampling.BILINEAR), dtype=np.int16)
    noise = rng.integers(-10, 11, (256, 256, 3), dtype=np.int16)
    tiles = np.tile(noise, (height // 256 + 1, width // 256 + 1, 1))[:height, :width]
    Image.fromarray(np.clip(image + tiles, 0, 255).astype(np.uint8)).save(folder / f"IMG_{index:05d}.jpg", quality=90)


def _decode_one(path: Path, metadata):
    """What a score worker does per photo (longteng.inference.predict.decode_photo)."""
    from longteng.inference.predict import decode_photo

    return decode_photo(path, metadata, 100_000_000)


def _decode_alone(files: list[Path], model: Path, cores: int) -> tuple[float, list]:
    from longteng.inference.session import OnnxModel

    metadata = OnnxModel(model).metadata
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_decode_one, files[:cores], [metadata] * cores))  # start the workers first
        start = time.perf_counter()
        prepared = list(pool.map(_decode_one, files, [metadata] * len(files), chunksize=4))
        return time.perf_counter() - start, prepared


def _ocr_one(crop: np.ndarray) -> int:
    from longteng.inference.text_check import read_text

    return len(read_text(crop, threads=1))  # as a score worker reads: one thread per process


def _ocr_alone(crops: np.ndarray, cores: int) -> float:
    """Wall seconds of the text check's OCR alone on every crop, one process per core."""
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_ocr_one, crops[:cores]))  # start the workers and their OCR engines first
        start = time.perf_counter()
        list(pool.map(_ocr_one, crops, chunksize=2))
        return time.perf_counter() - start


def _infer_alone(prepared: list, model: Path, batch_size: int, cores: int) -> tuple[float, dict]:
    """Seconds of inference alone (both stages for a two-stage model, and the OCR of a model
    that reads print: O, on all cores), and its parts."""
    from longteng.inference.session import OnnxModel
    from longteng.inference.two_stage import focus_inputs, focus_items

    session = OnnxModel(model)
    if not session.metadata.two_stage:
        pixels = np.stack(prepared)
        session.run(pixels[:batch_size])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(pixels), batch_size):
            session.run(pixels[i:i + batch_size])
        return time.perf_counter() - start, {}
    glance = np.stack([p.glance for p in prepared])
    session.run_glance(glance[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(glance), batch_size):
        session.run_glance(glance[i:i + batch_size])
    glance_s = time.perf_counter() - start
    start = time.perf_counter()
    # focus_inputs / focus_items run the glance again: its time is taken off the crop's.
    cut = focus_items if session.metadata.finds_items else focus_inputs
    crops = np.concatenate([cut(session, prepared[i:i + batch_size])[0] for i in range(0, len(prepared), batch_size)])
    crop_s = time.perf_counter() - start - glance_s
    session.run(crops[:batch_size])
    start = time.perf_counter()
    for i in range(0, len(crops), batch_size):
        session.run(crops[i:i + batch_size])
    focus_s = time.perf_counter() - start
    ocr_s = _ocr_alone(crops, cores) if session.metadata.text_registry is not None else 0.0
    photos = len(prepared)  # per photo: a photo of k items pays k focus passes (and k OCR reads)
    return glance_s + focus_s + ocr_s, {"M_glance_ms": 1000 * glance_s / photos, "M_focus_ms": 1000 * focus_s / photos,
                                        "O_ocr_ms": 1000 * ocr_s / photos, "C_crop_ms": 1000 * max(crop_s, 0.0) / photos,
                                        "items_per_photo": len(crops) / photos}


def _score(folder: Path, out: Path, args, engine: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of the whole `longteng score` process tree."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "longteng", "score", str(folder), "--model", str(args.model), "--out", str(out),
               "--engine", engine, "--batch-size", str(args.batch_size), "--no-progress"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = _watch_rss(process)
    _, stderr = process.communicate()
    wall = time.perf_counter() - start
    if process.returncode not in (0, 3):
        sys.exit(f"score failed ({process.returncode}): {stderr.decode(errors='replace')}")
    return wall, peak


def _watch_rss(process: subprocess.Popen) -> float:
    import psutil

    peak = 0.0
    parent = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.05)
    return peak


def _baseline(root: Path, args) -> tuple[int, float, float]:
    from longteng.inference.session import OnnxModel

    script = BASELINE_TWO_STAGE_SCRIPT if OnnxModel(args.model).metadata.two_stage else BASELINE_SCRIPT
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, str(args.checkpoint), str(root), str(args.batch_size)],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"baseline failed: {done.stderr[-2000:]}")
    count, loop = done.stdout.split()[-2:]
    return int(count), float(loop), wall


def _report(results: dict) -> None:
    lines = [
        f"# longteng score benchmark: N={results['n']} per set, {results['cores']} cores, batch {results['batch_size']}",
        "",
        "| set | D ms/img | M ms/img | limit img/s | local img/s (e2e / steady) | steady / limit | dask img/s (e2e / steady) | dask overhead | baseline img/s (e2e / steady) | vs baseline | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in results["sets"].items():
        def pair(prefix: str) -> str:
            return f"{e[prefix + '_img_s']:.1f} / {e[prefix + '_steady_img_s']:.1f}" if prefix + "_img_s" in e else "-"
        rss = f"local {e['local_peak_rss_mb']:.0f}" + (f", dask {e['dask_peak_rss_mb']:.0f}" if "dask_peak_rss_mb" in e else "")
        if "peak_rss_half_mb" in e:
            rss += f"; N/2 {e['peak_rss_half_mb']:.0f} -> N {e['peak_rss_full_mb']:.0f}"
        cells = [
            f"{name} ({e['mean_file_kb']:.0f} kB" + (f", {e['items_per_photo']:.2f} items" if e.get("items_per_photo", 1) != 1 else "") + ")",
            f"{e['D_ms']:.1f}", f"{e['M_ms']:.1f}", f"{e['limit_img_s']:.1f}",
            pair("local"), f"{e['ratio_to_limit']:.2f} (target {TARGET_LIMIT_RATIO})", pair("dask"),
            f"{e['dask_overhead']:.2f}x" if "dask_overhead" in e else "-", pair("baseline"),
            f"{e['vs_baseline']:.1f}x" if "vs_baseline" in e else "-", rss,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "steady = (N - 1) / (wall - wall of a 1-photo run): start-up, model load and assembly excluded."]
    text = "\n".join(lines)
    print(text)
    folder = ROOT / "bench" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (folder / f"score-{stamp}.json").write_text(json.dumps(results, indent=2))
    (folder / f"score-{stamp}.md").write_text(text + "\n")


if __name__ == "__main__":
    raise SystemExit(main())

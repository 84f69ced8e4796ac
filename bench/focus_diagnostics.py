"""Where a trained two-stage model's counterfeit decision loses: the glance's boxes, or what the
focus stage can see. Two probes on photos of a seed the model never saw:

1. boxes: the focus stage's ROC-AUC and recall at FA <= 0.02 on crops cut where the glance
   looks (the runtime's path) and on crops cut at the generator's own boxes (a perfect glance);
2. novelty: a nearest-neighbour distance of each position's fine-tuned features (after block 6)
   to the genuine photos of the same product at the same place (+-1 cell), the most unusual
   position deciding, alone and fused with the supervised score by rank averaging.

Reads the crops that bench/focus_variants.py prepared (its --work folder: training photos at
their boxes are the genuine reference bank; test photos at the glance's boxes):

    python bench/focus_diagnostics.py --model RUN/best.pt --test /tmp/dev/test --work /tmp/fv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from longteng.data.layout import scan_dataset
from longteng.decision import counterfeit_score, is_counterfeit_class, softmax
from longteng.focus import FocusSpec, OrientedBox, decode_for_focus, focus_crop, parse_quad
from longteng.model.checkpoint import build_two_stage, load_checkpoint
from longteng.preprocess import normalize
from longteng.training.metrics import recall_at_false_alarm_rate, roc_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a two-stage checkpoint (RUN/best.pt)")
    parser.add_argument("--test", type=Path, required=True, help="the test dataset focus_variants.py cropped")
    parser.add_argument("--work", type=Path, required=True, help="focus_variants.py's --work folder")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_checkpoint(args.model)
    model = build_two_stage(checkpoint).eval()
    classes = checkpoint.class_names
    spec, focus = checkpoint.preprocess, FocusSpec(input_size=384)
    splits = {s: json.loads((args.work / f"{s}_labels.json").read_text()) for s in ("train", "test")}
    if splits["train"]["classes"] != classes:
        parser.error(f"--work was prepared for classes {splits['train']['classes']}, the model has {classes}")
    labels = {s: np.array(splits[s]["labels"]) for s in splits}
    positive = np.array([is_counterfeit_class(classes[i]) for i in labels["test"]])

    def run(crops: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        scores, block6 = [], []
        with torch.no_grad():
            for start in range(0, len(crops), 32):
                x = model.trunk(torch.from_numpy(normalize(np.asarray(crops[start : start + 32]), spec)))
                h = model.tail[1](model.tail[0](x))
                scores.append(model.focus_from_features(x)[0].numpy())
                block6.append(h.half())
        return counterfeit_score(softmax(np.concatenate(scores), checkpoint.temperature), classes), torch.cat(block6)

    def line(name: str, scores: np.ndarray) -> None:
        print(f"{name:42s} ROC-AUC {roc_auc(scores, positive):.3f}  recall@FA0.02 "
              f"{recall_at_false_alarm_rate(scores, positive, 0.02):.3f}", flush=True)

    glance_scores, test_block6 = run(np.load(args.work / "test_crops384.npy", mmap_mode="r"))
    line("supervised, crops at the glance's boxes", glance_scores)

    records = scan_dataset(args.test)
    truth = []
    for record in records:
        photo = decode_for_focus(args.test / record.path, focus)
        box = OrientedBox.from_quad(parse_quad(record.extra["quad"], photo.image.size))
        truth.append(focus_crop(photo.image, box, focus, spec.pad_color))
    line("supervised, crops at the generator's boxes", run(np.stack(truth))[0])

    _, bank_block6 = run(np.load(args.work / "train_crops384.npy", mmap_mode="r"))
    product = lambda i: classes[i].split("/")[0]  # noqa: E731
    novelty = np.zeros(len(positive))
    queries, bank = F.normalize(test_block6.float(), dim=1), F.normalize(bank_block6.float(), dim=1)
    h, w = queries.shape[2:]
    for name in sorted({product(i) for i in labels["test"]}):
        mine = np.array([product(i) == name for i in labels["test"]])
        genuine = torch.from_numpy(np.array([product(i) == name and not is_counterfeit_class(classes[i]) for i in labels["train"]]))
        padded = F.pad(bank[genuine], (1, 1, 1, 1))
        nearest = torch.full((int(mine.sum()), h, w), 4.0)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                similarity = torch.einsum("nchw,gchw->nghw", queries[torch.from_numpy(mine)], shifted).amax(1)
                nearest = torch.minimum(nearest, 2 - 2 * similarity)
        novelty[mine] = nearest.flatten(1).amax(1).numpy()
    line("novelty (nearest genuine, block 6)", novelty)
    rank = lambda s: np.argsort(np.argsort(s))  # noqa: E731
    line("supervised + novelty (rank average)", (rank(glance_scores) + rank(novelty)).astype(float))


if __name__ == "__main__":
    main()

"""Registration variants of the aligned check, measured through bench/aligned_probe.py.

Not a test, and not the runtime: the variant replaces `inference.aligned_check.register` in this
process only, then runs the probe with the remaining arguments (its crop cache is shared, so
give each variant its own --cache folder holding a link to the same crops-192.npz):

    python bench/registration_variants.py --variant phase_homo --model RUN/model.onnx --train TRAIN --test TEST --cache DIR

Variants: ``current`` (the runtime's: affine ECC from the two likeliest turns and the half turn
of the likeliest), ``phase`` (each turn also started from the shift that phase correlation of
the edge maps finds), ``phase_homo`` (``phase``, then a homography refined from the best affine
fit, kept where ECC's correlation rises: the keystone of a tilted phone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from longteng.inference import aligned_check

VARIANTS = ("current", "phase", "phase_homo")
_runtime_register = aligned_check.register


def _phase_start(template: np.ndarray, image_edges: np.ndarray, angle: float) -> np.ndarray:
    size = template.shape[0]
    turn = aligned_check._rotation(size, angle)
    turned = cv2.warpAffine(image_edges, turn, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    window = cv2.createHanningWindow((size, size), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(template.astype(np.float32), turned.astype(np.float32), window)
    start = turn.copy()  # template pixel p -> turned pixel p + d -> crop pixel turn(p + d)
    start[:, 2] += turn[:, :2] @ np.array([dx, dy], np.float32)
    return start


def _affine_at_centre(homography: np.ndarray, size: int) -> np.ndarray:
    """The homography's first-order (affine) part at the template's centre, for the aspect
    feature and the evidence box, which expect a (2, 3) warp."""
    h = homography.astype(np.float64)
    centre = np.array([size / 2, size / 2, 1.0])
    q = h @ centre
    jacobian = (h[:2, :2] * q[2] - np.outer(q[:2], h[2, :2])) / q[2] ** 2
    return np.hstack([jacobian, (q[:2] / q[2] - jacobian @ centre[:2])[:, None]]).astype(np.float32)


def make_register(variant: str):
    if variant == "current":
        return _runtime_register

    def register(crop: np.ndarray, template: np.ndarray) -> aligned_check.Registration:
        size = template.shape[0]
        image_edges = aligned_check.edge_map(crop)
        first, second = aligned_check._likely_rotations(image_edges, template, 2)
        best_correlation, best_warp = -1.0, None
        for angle in dict.fromkeys((first, second, (first + 180.0) % 360.0)):
            for start in (aligned_check._rotation(size, angle), _phase_start(template, image_edges, angle)):
                found = aligned_check._ecc(template, image_edges, start)
                if found is not None and found[0] > best_correlation:
                    best_correlation, best_warp = found
        if best_warp is None:
            return aligned_check.Registration(crop, -1.0, np.eye(2, 3, dtype=np.float32))
        if variant == "phase_homo":
            homography = np.vstack([best_warp, [0, 0, 1]]).astype(np.float32)
            try:
                correlation, homography = cv2.findTransformECC(
                    template, image_edges, homography, cv2.MOTION_HOMOGRAPHY, aligned_check._ECC_CRITERIA, None, 1)
            except cv2.error:
                correlation = -1.0
            if correlation > best_correlation:
                pixels = cv2.warpPerspective(crop, homography, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                             borderMode=cv2.BORDER_REPLICATE)
                return aligned_check.Registration(pixels, float(correlation), _affine_at_centre(homography, size))
        pixels = cv2.warpAffine(crop, best_warp, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        return aligned_check.Registration(pixels, best_correlation, best_warp)

    return register


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    args, rest = parser.parse_known_args()
    # compare() and ProductReferences.build() look register up in the module at call time.
    aligned_check.register = make_register(args.variant)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import aligned_probe

    sys.argv = [sys.argv[0], *rest]
    aligned_probe.main()


if __name__ == "__main__":
    main()

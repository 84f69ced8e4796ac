"""Read raw weight files safely and load them into a model only when every tensor fits.

A partial load is the quiet failure mode of transfer learning: PyTorch's ``strict=False``
happily leaves half a backbone at random and training still "works", just badly. Every
load here therefore names what did not fit and refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from longteng.errors import CheckpointError

_LISTED_KEYS = 12


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` file: ``.safetensors``, or a torch file read with weights_only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            # weights_only refuses pickled code: a weights file must never run anything.
            state = torch.load(path, weights_only=True, map_location="cpu")
    # Corrupt, truncated or hostile files fail in many library-specific ways (zip, pickle,
    # safetensors header, EOF); all of them mean the same thing to the caller.
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CheckpointError(f"{path}: not a flat state dict of named tensors")
    return dict(state)


def name_some(keys: Sequence[str]) -> str:
    """A readable, bounded list of keys for an error message."""
    shown = ", ".join(keys[:_LISTED_KEYS])
    hidden = len(keys) - _LISTED_KEYS
    return f"{shown} ... and {hidden} more" if hidden > 0 else shown


def load_complete(
    model: nn.Module,
    source: Mapping[str, torch.Tensor],
    key_map: Mapping[str, str],
    unmapped_source_keys: Sequence[str],
    *,
    skipped_model_prefixes: Sequence[str] = (),
    label: str,
) -> None:
    """Copy ``source[k]`` into the model's tensor ``key_map[k]`` for every k, all or nothing.

    Refuses (CheckpointError naming the keys) when a source key has no destination
    (``unmapped_source_keys`` or a destination the model lacks), two source keys share a
    destination, a shape differs, or a model tensor receives nothing; model tensors under
    ``skipped_model_prefixes`` (a head the caller initialises itself) may stay untouched.
    """
    targets = model.state_dict()
    problems: list[str] = []
    unmapped = list(unmapped_source_keys) + [k for k, t in key_map.items() if t not in targets]
    if unmapped:
        problems.append(f"source tensors with no place in the model: {name_some(unmapped)}")

    sources_by_target: dict[str, list[str]] = {}
    for source_key, target_key in key_map.items():
        sources_by_target.setdefault(target_key, []).append(source_key)
    shared = [f"{t} <- {' and '.join(s)}" for t, s in sources_by_target.items() if len(s) > 1]
    if shared:
        problems.append(f"model tensors filled twice: {name_some(shared)}")

    wrong_shape = [
        f"{source_key} {tuple(source[source_key].shape)} -> {target_key} {tuple(targets[target_key].shape)}"
        for source_key, target_key in key_map.items()
        if target_key in targets and source[source_key].shape != targets[target_key].shape
    ]
    if wrong_shape:
        problems.append(f"shape mismatches: {name_some(wrong_shape)}")

    missing = [
        key
        for key in targets
        if key not in sources_by_target and not key.startswith(tuple(skipped_model_prefixes))
    ]
    if missing:
        problems.append(f"model tensors without a source: {name_some(missing)}")

    if problems:
        raise CheckpointError(f"{label} do not fit the model; " + "; ".join(problems))
    with torch.no_grad():
        for source_key, target_key in key_map.items():
            targets[target_key].copy_(source[source_key])

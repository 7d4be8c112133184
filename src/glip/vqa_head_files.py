"""VQA head files: the answer head's weights (``.safetensors``) and its answer vocabulary (``.json``).

A head trained on a model ``runs/vqa/model.safetensors`` is written beside it as
``model.vqa.safetensors`` (the weights) and ``model.vqa.json``::

    {"format": "glip-vqa-head", "version": 1, "head": {VqaHeadConfig fields},
     "text_dim": 384, "visual_dim": 64, "answers": ["yes", "no", ...], "counts": [812, 790, ...],
     "base_model": {"name": "glip-nano", "fingerprint": "<adapters.model_fingerprint>"}}

`GLIPPredictor.from_pretrained` loads the head found beside a model file. Loading checks, each a
one-line `VqaHeadError`: the vocabulary has one answer per row of the head's last layer (an
answer vocabulary mismatch otherwise), the head's widths are the model's, and the model is the
one the head was trained with (its weights' fingerprint).

Example:
    >>> save_vqa_head(head, vocabulary, "runs/vqa/model.vqa.safetensors", model)  # doctest: +SKIP
    >>> head, vocabulary = load_vqa_head("runs/vqa/model.vqa.safetensors", model)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from glip.adapters import model_fingerprint
from glip.data.vqa_answers import AnswerVocabulary
from glip.files import write_atomically
from glip.modeling.glip import GLIP
from glip.modeling.vqa_head import VqaHead, VqaHeadConfig

VQA_HEAD_FORMAT = "glip-vqa-head"
VQA_HEAD_VERSION = 1
VQA_HEAD_SUFFIX = ".vqa.safetensors"
NO_VQA_HEAD = ("this model has no VQA answer head: fine-tune one with `glip vqa-train CONFIG.yaml` (e.g. "
               "configs/vqa-shapes.yaml), then use its model.safetensors (the head model.vqa.safetensors beside it "
               "is loaded with it) or pass the head with --vqa-head")


class VqaHeadError(ValueError):
    """A VQA head file that cannot be used with this model (missing, malformed, mismatched)."""


def head_path_for(model_path: str | os.PathLike) -> Path:
    """Where the head of a model file lives: ``X.safetensors`` -> ``X.vqa.safetensors``."""
    path = Path(model_path)
    return path.with_name(path.name.removesuffix(".safetensors") + VQA_HEAD_SUFFIX)


def _json_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_vqa_head(head: VqaHead, vocabulary: AnswerVocabulary, path: str | os.PathLike, base_model: GLIP,
                  info: dict[str, str] | None = None) -> Path:
    """Write ``head`` and ``vocabulary`` to ``path`` (.safetensors) and ``path`` with .json, atomically.

    Args:
        head: the trained answer head.
        vocabulary: its answers, one per row of its last layer.
        path: ``*.vqa.safetensors`` beside the model file it goes with (`head_path_for`).
        base_model: the model whose fused features it was trained on (its fingerprint is kept).
        info: free metadata (steps, data), stored in the JSON.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise VqaHeadError(f"VQA head files end in .safetensors, got {path.name}")
    if len(vocabulary) != head.num_answers:
        raise VqaHeadError(f"answer vocabulary mismatch: {len(vocabulary)} answers for a head scoring "
                           f"{head.num_answers}")
    record = {"format": VQA_HEAD_FORMAT, "version": VQA_HEAD_VERSION, "head": head.config.to_dict(),
              "text_dim": head.text_dim, "visual_dim": head.visual_dim, "answers": list(vocabulary.answers),
              "counts": list(vocabulary.counts),
              "base_model": {"name": base_model.config.name, "fingerprint": model_fingerprint(base_model)},
              "info": dict(info or {})}
    tensors = {name: value.detach().to("cpu").contiguous() for name, value in head.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: save_file(tensors, str(temporary),
                                                       metadata={"format": VQA_HEAD_FORMAT}))
    text = json.dumps(record, indent=1) + "\n"
    write_atomically(_json_path(path), lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return path


def read_vqa_head_record(path: str | os.PathLike) -> dict:
    """The checked JSON record of a head file (its vocabulary and settings), without the weights."""
    path = Path(path)
    record_path = _json_path(path)
    if not path.is_file():
        raise VqaHeadError(f"VQA head file {path} does not exist")
    if not record_path.is_file():
        raise VqaHeadError(f"{path} has no answer vocabulary beside it ({record_path.name}): copy the .json "
                           "written with the head")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise VqaHeadError(f"{record_path} is not readable JSON ({error})") from None
    if not isinstance(record, dict) or record.get("format") != VQA_HEAD_FORMAT:
        raise VqaHeadError(f"{record_path} is not a VQA head record (format {VQA_HEAD_FORMAT!r})")
    answers, counts = record.get("answers"), record.get("counts")
    if (not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers)
            or not isinstance(counts, list) or len(counts) != len(answers)):
        raise VqaHeadError(f"{record_path}: 'answers' must be a non-empty list of strings with one count each")
    return record


def load_vqa_head(path: str | os.PathLike, model: GLIP, check_base: bool = True) -> tuple[VqaHead, AnswerVocabulary]:
    """The head of ``path`` and its vocabulary, checked against ``model`` (see the module docstring).

    ``check_base=False`` skips the fingerprint check (a head moved to a model that differs only by
    rounding, e.g. a float16 copy); the widths and the vocabulary are always checked.
    """
    from safetensors.torch import load_file

    path = Path(path)
    record = read_vqa_head_record(path)
    try:
        config = VqaHeadConfig.from_dict(record["head"])
        vocabulary = AnswerVocabulary(tuple(record["answers"]), tuple(int(c) for c in record["counts"]))
        state = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - a malformed record or weights file: one line naming it
        raise VqaHeadError(f"{path} is not a usable VQA head ({type(error).__name__}: {error})") from None
    rows = state.get("classifier.4.weight")
    scored = rows.shape[0] if rows is not None else None
    if len(vocabulary) != config.num_answers or scored != config.num_answers:
        raise VqaHeadError(f"answer vocabulary mismatch: {_json_path(path).name} lists {len(vocabulary)} answers "
                           f"and its config says {config.num_answers}, but the weights in {path.name} score "
                           f"{scored}: use the .json written with these weights")
    text_dim, visual_dim = model.config.text.hidden_size, model.config.head.channels
    if (record.get("text_dim"), record.get("visual_dim")) != (text_dim, visual_dim):
        raise VqaHeadError(f"{path} reads fused features of width {record.get('text_dim')} (text) and "
                           f"{record.get('visual_dim')} (image), but this model ({model.config.name}) has "
                           f"{text_dim} and {visual_dim}: use the model the head was trained with")
    base = record.get("base_model") or {}
    if check_base and base.get("fingerprint") != model_fingerprint(model):
        raise VqaHeadError(f"{path} was trained on another model ({base.get('name')}, fingerprint "
                           f"{base.get('fingerprint')}) than this one ({model.config.name}, "
                           f"{model_fingerprint(model)}): use the model.safetensors written with the head")
    head = VqaHead(config, text_dim, visual_dim)
    try:
        head.load_state_dict(state)
    except RuntimeError as error:
        raise VqaHeadError(f"{path}: weights do not fit the head its record describes "
                           f"({str(error).splitlines()[0]})") from None
    return head.to(_device_of(model)).eval(), vocabulary


def _device_of(model: GLIP) -> torch.device:
    return model.head.bias_lang.device

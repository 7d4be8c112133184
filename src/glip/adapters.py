"""Task adapters: the few tensors a prompt-tuned or linear-probed task learned, on top of a base model.

An adapter file is a ``.safetensors`` holding only the tuned tensors, named as in the model's
``state_dict`` (``prompt_embedding`` for prompt tuning; ``head.box_regression.weight``, ... for a
linear probe), with metadata: the task's prompt (caption and phrase spans), its categories, the
tuning mode and the *fingerprint* of the base model it was tuned on. Applying it to any other base
model is refused, because the learned tensors only mean something next to the weights they were
trained with.

One base model serves many tasks: `AdapterSwitch` copies an adapter's tensors into the model for
the duration of a call and puts the base values back afterwards, so switching tasks costs a copy of
a few kilobytes, never a model reload.

Example:
    >>> adapter = load_adapter("warning-signs.safetensors")  # doctest: +SKIP
    >>> switch = AdapterSwitch(model)  # doctest: +SKIP
    >>> with switch.applied(adapter):  # doctest: +SKIP
    ...     output = model(images, ids, mask)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from glip.files import write_atomically
from glip.prompts import Prompt

ADAPTER_FORMAT = "glip-adapter"
ADAPTER_VERSION = "1"
PROMPT_EMBEDDING = "prompt_embedding"


class AdapterError(ValueError):
    """An adapter that cannot be used: unreadable, for another base model, or for other categories."""


@dataclass
class AdapterCategory:
    id: int | str
    name: str  # as written in the task's annotation file


@dataclass
class Adapter:
    """What one tuned task adds to its base model.

    Attributes:
        tensors: the tuned tensors by ``state_dict`` name.
        prompt: the fixed prompt the task was tuned with (one phrase per category, in order).
        categories: the task's categories, in phrase order.
        mode: ``prompt`` or ``linear``.
        base_fingerprint: `model_fingerprint` of the base model it was tuned on.
        name: how a predictor or server refers to it (default: the file's stem).
        info: free extra metadata (shots, seed, training steps, ...).
    """

    tensors: dict[str, torch.Tensor]
    prompt: Prompt
    categories: list[AdapterCategory]
    mode: str
    base_fingerprint: str
    name: str = "adapter"
    info: dict[str, str] = field(default_factory=dict)

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]


def model_fingerprint(model: nn.Module) -> str:
    """A short SHA-256 of the model's weights (float32 values, sorted names), the prompt embedding
    left out: the identity of a base model, whatever file format it was read from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name == PROMPT_EMBEDDING:
            continue
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_adapter(adapter: Adapter, path: str | os.PathLike) -> Path:
    """Write ``adapter`` to ``path`` (temporary file, then rename: never a half-written adapter)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise AdapterError(f"adapter files end in .safetensors, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": ADAPTER_FORMAT, "version": ADAPTER_VERSION, "mode": adapter.mode,
        "base_fingerprint": adapter.base_fingerprint, "name": adapter.name,
        "caption": adapter.prompt.caption, "phrases": json.dumps(adapter.prompt.phrases),
        "spans": json.dumps(adapter.prompt.spans),
        "categories": json.dumps([{"id": c.id, "name": c.name} for c in adapter.categories]),
        "info": json.dumps(adapter.info),
    }
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in adapter.tensors.items()}
    return write_atomically(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


def load_adapter(path: str | os.PathLike, name: str | None = None) -> Adapter:
    """Read an adapter file; ``name`` defaults to the one stored, else the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"adapter file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise AdapterError(f"{path} is not a readable safetensors file ({error})") from None
    if metadata.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{path} is not a glip adapter (a model checkpoint? pass it as --weights instead)")
    try:
        spans = [[tuple(span) for span in phrase] for phrase in json.loads(metadata["spans"])]
        prompt = Prompt(caption=metadata["caption"], phrases=json.loads(metadata["phrases"]), spans=spans)
        categories = [AdapterCategory(c["id"], c["name"]) for c in json.loads(metadata["categories"])]
        return Adapter(tensors=tensors, prompt=prompt, categories=categories, mode=metadata["mode"],
                       base_fingerprint=metadata["base_fingerprint"],
                       name=name or metadata.get("name") or path.stem, info=json.loads(metadata.get("info", "{}")))
    except (KeyError, ValueError, TypeError) as error:
        raise AdapterError(f"{path}: damaged adapter metadata ({error})") from None


class AdapterSwitch:
    """Applies adapters to one base model temporarily; the base values are kept and restored.

    Only one adapter is active at a time (calls are serialised by a lock), so concurrent callers
    never see each other's task.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.fingerprint = model_fingerprint(model)
        self._lock = threading.RLock()

    def check(self, adapter: Adapter) -> None:
        """Refuse an adapter tuned on another base model, or one naming tensors the model lacks."""
        if adapter.base_fingerprint != self.fingerprint:
            raise AdapterError(
                f"adapter '{adapter.name}' was tuned on base model {adapter.base_fingerprint}, but this model is "
                f"{self.fingerprint}: load the base weights it was tuned from (or tune it again on these)")
        state = self.model.state_dict()
        for name, tensor in adapter.tensors.items():
            if name == PROMPT_EMBEDDING:
                continue
            if name not in state or state[name].shape != tensor.shape:
                raise AdapterError(f"adapter '{adapter.name}' holds {name} {tuple(tensor.shape)}, which this model "
                                   "does not have in that shape")

    @contextmanager
    def applied(self, adapter: Adapter | None) -> Iterator[None]:
        """The model with ``adapter``'s tensors in place (``None``: the base model as it is)."""
        if adapter is None:
            yield
            return
        self.check(adapter)
        with self._lock, torch.no_grad():
            parameters = dict(self.model.named_parameters())
            saved = {}
            previous_prompt = self.model.prompt_embedding
            try:
                for name, tensor in adapter.tensors.items():
                    if name == PROMPT_EMBEDDING:
                        device = next(self.model.parameters()).device
                        self.model.prompt_embedding = nn.Parameter(tensor.to(device), requires_grad=False)
                        continue
                    target = parameters[name]
                    saved[name] = target.detach().clone()
                    target.copy_(tensor.to(target.device, target.dtype))
                yield
            finally:
                for name, value in saved.items():
                    parameters[name].copy_(value)
                self.model.prompt_embedding = previous_prompt

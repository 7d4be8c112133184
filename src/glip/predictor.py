"""Zero-shot detection and phrase grounding from Python: ``GLIPPredictor``.

Example:
    >>> from glip import GLIPPredictor
    >>> predictor = GLIPPredictor.from_pretrained("glip_tiny_model_o365_goldg.pth", device="cpu")
    >>> results = predictor.detect(["street.jpg"], classes=["person", "bicycle", "car"], threshold=0.5)
    >>> results[0].detections[0].bbox_xyxy, results[0].detections[0].phrase
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from glip.checkpoint import load_glip, load_official
from glip.hub import OFFICIAL_WEIGHTS, resolve_weights
from glip.images import ImageSource, prepare_images
from glip.modeling.glip import GLIP
from glip.modeling.postprocess import Detections, PostProcessor
from glip.prompts import (Prompt, TokenizedPrompt, build_caption_prompt, build_class_prompt, chunk_class_names,
                          tokenize_prompt)
from glip.tokenizer import load_tokenizer
from glip.adapters import Adapter, AdapterError, AdapterSwitch, load_adapter

logger = logging.getLogger(__name__)


@dataclass
class Detection:
    """One detected region: box in original-image pixels (x1, y1, x2, y2), score, and its phrase."""

    bbox_xyxy: list[float]
    score: float
    phrase: str
    phrase_index: int  # 0-based index into the prompt's phrases (the class list, for detection)


@dataclass
class ImageDetections:
    """Everything detected in one image, highest score first."""

    image: str | None
    width: int
    height: int
    caption: str
    phrases: list[str]
    detections: list[Detection] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PromptChunk:
    """A prompt the model can take in one pass, and where its phrases sit in the full phrase list."""

    prompt: Prompt
    tokens: TokenizedPrompt
    phrase_offset: int


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` = CUDA when available, else CPU. Asking for CUDA without it is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for, but this machine has no usable CUDA device "
                         "(torch.cuda.is_available() is False): use --device cpu")
    return device


class GLIPPredictor:
    def __init__(self, model: GLIP, device: str | torch.device | None = None, trim_text_padding: bool = True) -> None:
        """``trim_text_padding``: run the text side on the prompt's real tokens only instead of the
        full padded window. Padding never influences real tokens (it is masked everywhere), so the
        detections are the same up to float rounding, and the fusion layers get much cheaper."""
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = load_tokenizer()
        self.max_length = model.config.text.max_length
        self.trim_text_padding = trim_text_padding
        self.adapters: dict[str, Adapter] = {}
        self._switch: AdapterSwitch | None = None  # built on the first adapter (fingerprints the base)

    # ------------------------------------------------------------------ adapters
    def add_adapter(self, adapter: Adapter | str | os.PathLike, name: str | None = None) -> Adapter:
        """Register a tuned task (an `Adapter` or its file) under ``name`` (default: its own name).
        It is checked against this base model now; the base weights stay as they are."""
        if not isinstance(adapter, Adapter):
            adapter = load_adapter(adapter, name)
        elif name is not None:
            adapter = dataclasses.replace(adapter, name=name)
        if adapter.name in self.adapters and self.adapters[adapter.name] is not adapter:
            raise AdapterError(f"an adapter named '{adapter.name}' is already loaded: give this one another name")
        if self._switch is None:
            self._switch = AdapterSwitch(self.model)
        self._switch.check(adapter)
        self.adapters[adapter.name] = adapter
        return adapter

    def adapter(self, name: str) -> Adapter:
        if name not in self.adapters:
            known = ", ".join(sorted(self.adapters)) or "none loaded"
            raise AdapterError(f"unknown adapter '{name}' (adapters: {known})")
        return self.adapters[name]

    @contextmanager
    def adapter_applied(self, name: str | None) -> Iterator[None]:
        """The model with adapter ``name`` in place for the duration (None: the base model)."""
        if name is None:
            yield
            return
        adapter = self.adapter(name)
        with self._switch.applied(adapter):
            yield

    @classmethod
    def from_pretrained(cls, path_or_name: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        config: str | None = None) -> "GLIPPredictor":
        """Load our ``.safetensors`` checkpoint, an official ``.pth`` (path), or an official file by name
        (``glip_tiny_model_o365_goldg.pth``: local cache first, then the Hugging Face hub).
        ``None`` loads the embedded default model."""
        if path_or_name is None:
            from glip.default_model import default_weights

            path_or_name = default_weights()
        path = Path(path_or_name)
        if not path.exists() and str(path_or_name) in OFFICIAL_WEIGHTS:
            path = resolve_weights(str(path_or_name))
            config = config or OFFICIAL_WEIGHTS[str(path_or_name)]
        elif not path.exists():
            path = resolve_weights(str(path_or_name))  # raises with the list of known names
        model = load_glip(path, config) if path.suffix == ".safetensors" or path.is_dir() else load_official(path, config)
        logger.info("loaded %s (%s)", path, model.config.name)
        return cls(model, device)

    # ------------------------------------------------------------------ prompts
    def build_prompts(self, classes: Sequence[str] | None = None, caption: str | None = None,
                      phrases: Sequence[str | tuple[int, int]] | None = None,
                      adapter: str | None = None) -> list[PromptChunk]:
        """The prompt chunks for a class list (split to fit the token window) or one caption; with
        an adapter, its fixed task prompt (``classes``, if given, must be its categories)."""
        if adapter is not None:
            task = self.adapter(adapter)
            if caption is not None:
                raise ValueError(f"adapter '{adapter}' detects its own categories; a caption cannot be used with it")
            if classes is not None and list(classes) != task.category_names:
                raise AdapterError(f"adapter '{adapter}' was tuned for the categories {task.category_names}, not "
                                   f"{list(classes)}: leave out the classes to use its own")
            return [PromptChunk(task.prompt, tokenize_prompt(task.prompt, self.max_length, self.tokenizer), 0)]
        if (classes is None) == (caption is None):
            raise ValueError("give either classes=[...] or caption='...' (exactly one of them)")
        if classes is not None:
            if isinstance(classes, str):
                raise ValueError("classes must be a list of names, not one string: classes=['person', 'car']")
            names = list(classes)
            if not names:
                raise ValueError("no classes given: pass at least one class name")
            chunks = []
            for indices in chunk_class_names(names, self.max_length, self.tokenizer):
                prompt = build_class_prompt([names[i] for i in indices])
                chunks.append(PromptChunk(prompt, tokenize_prompt(prompt, self.max_length, self.tokenizer), indices[0]))
            return chunks
        if phrases is not None and len(phrases) == 0:
            phrases = None
        prompt = build_caption_prompt(caption, phrases)
        return [PromptChunk(prompt, tokenize_prompt(prompt, self.max_length, self.tokenizer), 0)]

    # ------------------------------------------------------------------ detection
    @torch.inference_mode()
    def detect(self, images: Sequence[ImageSource] | ImageSource, classes: Sequence[str] | None = None,
               caption: str | None = None, phrases: Sequence[str | tuple[int, int]] | None = None,
               threshold: float = 0.5, max_detections: int | None = None, batch_size: int = 1,
               progress: bool = False, adapter: str | None = None) -> list[ImageDetections]:
        """Detect the prompt's phrases in each image.

        Args:
            images: paths, PIL images or HxWx3 RGB arrays (one or a list).
            classes: class names (detection prompt "a. b. c."); any number, chunked to fit 256 tokens.
            caption: a free caption; ``phrases`` are strings found in it or (start, end) character
                spans; without phrases, its noun phrases (spaCy, optional) or the whole caption.
            threshold: minimum score of a returned detection.
            max_detections: per image (default: the model config's, 100).
            batch_size: images per forward pass.
            adapter: the name of a tuned task (`add_adapter`): its prompt and tuned tensors are used;
                ``classes`` may then be left out.
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        single = not isinstance(images, (list, tuple))
        sources = [images] if single else list(images)
        if not sources:
            raise ValueError("no images given")
        chunks = self.build_prompts(classes, caption, phrases, adapter)
        all_phrases = [p for chunk in chunks for p in chunk.prompt.phrases]
        caption_text = chunks[0].prompt.caption if len(chunks) == 1 else " ".join(c.prompt.caption for c in chunks)
        postprocess = PostProcessor(self.model.config.postprocess)
        if max_detections is not None:
            postprocess.config = type(postprocess.config)(**{**asdict(postprocess.config),
                                                            "detections_per_image": max_detections})
        results = []
        starts = range(0, len(sources), batch_size)
        for start in tqdm(starts, desc="detect", unit="batch", disable=not progress):
            batch_sources = sources[start:start + batch_size]
            batch = prepare_images(batch_sources, self.model.config.input).to(self.device)
            with self.adapter_applied(adapter):
                per_image = self._detect_batch(batch, chunks, postprocess)
            for offset, detections in enumerate(per_image):
                source = batch_sources[offset]
                h0, w0 = batch.original_sizes[offset]
                kept = detections.select(detections.scores >= threshold)
                results.append(ImageDetections(
                    image=os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
                    width=w0, height=h0, caption=caption_text, phrases=all_phrases,
                    detections=[
                        Detection([round(float(v), 2) for v in box], float(score), all_phrases[int(label)], int(label))
                        for box, score, label in zip(kept.boxes.tolist(), kept.scores.tolist(), kept.labels.tolist())
                    ],
                ))
        return results

    def _detect_batch(self, batch, chunks: list[PromptChunk], postprocess: PostProcessor) -> list[Detections]:
        """Image side once per batch, then the head once per prompt chunk; candidates of all chunks
        are merged before one class-aware NMS and the per-image cap."""
        image_features = self.model.encode_images(batch.tensor)
        candidates: list[list[Detections]] = [[] for _ in batch.image_sizes]
        for chunk in chunks:
            length = chunk.tokens.num_tokens if self.trim_text_padding else self.max_length
            ids = chunk.tokens.input_ids[None, :length].to(self.device)
            mask = chunk.tokens.attention_mask[None, :length].to(self.device)
            output = self.model(batch.tensor, ids, mask, image_features=image_features)
            for index, size in enumerate(batch.image_sizes):
                candidates[index].append(postprocess.candidates(
                    output.head, output.anchors, chunk.tokens.token_indices, index, size, chunk.phrase_offset))
        results = []
        for index, parts in enumerate(candidates):
            selected = postprocess.select(Detections.cat(parts))
            results.append(selected.rescaled(batch.image_sizes[index], batch.original_sizes[index]).sorted())
        return results

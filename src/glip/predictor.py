"""Zero-shot detection and phrase grounding from Python: ``GLIPPredictor``.

Example:
    >>> from glip import GLIPPredictor
    >>> predictor = GLIPPredictor.from_pretrained("glip_tiny_model_o365_goldg.pth", device="cpu")
    >>> results = predictor.detect(["street.jpg"], classes=["person", "bicycle", "car"], threshold=0.5)
    >>> results[0].detections[0].bbox_xyxy, results[0].detections[0].phrase

Instance masks (a model with a mask head): ``predictor.detect(..., masks=True)`` gives each
detection a ``segmentation``, a COCO RLE of the original image's size (``glip.data.rle_to_mask``
decodes it).

Visual question answering (a model with a VQA answer head, `glip vqa-train`):
``predictor.answer(images, ["how many stars are there?"], top_k=3)`` gives, per image, each
question's best answers with their scores (`glip.answering.ImageAnswers`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from glip.adapters import Adapter, AdapterError, AdapterSwitch, load_adapter
from glip.captioner import CaptionPhrase, Captioner, ImageCaption, caption_noun_phrases
from glip.answering import ImageAnswers, QuestionAnswerer, check_questions
from glip.checkpoint import load_glip, load_official
from glip.distributed import resolve_device
from glip.engine import NO_MASK_HEAD, DetectionCancelled, DetectionEngine, MaskedDetections
from glip.hub import OFFICIAL_WEIGHTS, resolve_weights
from glip.images import ImageSource, load_image, prepare_images
from glip.modeling.glip import GLIP
from glip.modeling.postprocess import Detections, one_name_per_object
from glip.prompts import PromptChunk, build_caption_prompt, chunk_caption_prompt, chunk_class_names, tokenize_prompt
from glip.tokenizer import load_tokenizer
from glip.vqa_head_files import NO_VQA_HEAD, head_path_for, load_vqa_head

logger = logging.getLogger(__name__)


@dataclass
class Detection:
    """One detected region: box in original-image pixels (x1, y1, x2, y2), score, and its phrase."""

    bbox_xyxy: list[float]
    score: float
    phrase: str
    phrase_index: int  # 0-based index into the prompt's phrases (the class list, for detection)
    # With masks=True: the instance mask as COCO RLE {"size": [height, width], "counts": str} of the
    # original image, and its number of pixels; left out of `ImageDetections.to_dict` otherwise.
    segmentation: dict | None = None
    mask_area: int | None = None


_MASK_FIELDS = ("segmentation", "mask_area")


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
        """JSON-ready; a detection's mask fields only when it has a mask."""
        data = asdict(self)
        data["detections"] = [{key: value for key, value in detection.items()
                               if key not in _MASK_FIELDS or value is not None} for detection in data["detections"]]
        return data


class GLIPPredictor:
    def __init__(self, model: GLIP, device: str | torch.device | None = None, trim_text_padding: bool = True) -> None:
        """``trim_text_padding``: run the text side on the prompt's real tokens only instead of the
        full padded window. Padding never influences real tokens (it is masked everywhere), so the
        detections are the same up to float rounding, and the fusion layers get much cheaper."""
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.engine = DetectionEngine(self.model, trim_text_padding)
        self.tokenizer = load_tokenizer()
        self.max_length = model.config.text.max_length
        self.adapters: dict[str, Adapter] = {}
        self._switch: AdapterSwitch | None = None  # built on the first adapter (fingerprints the base)
        self.answerer: QuestionAnswerer | None = None  # with a VQA answer head (`load_vqa_head`)

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
        predictor = cls(model, device)
        if head_path_for(path).is_file():  # a VQA answer head written beside the model (glip vqa-train)
            predictor.load_vqa_head(head_path_for(path))
        return predictor

    # ------------------------------------------------------------------ questions
    def load_vqa_head(self, path: str | os.PathLike, check_base: bool = True) -> None:
        """Use the VQA answer head of ``path`` (``*.vqa.safetensors`` and its ``.json`` vocabulary),
        checked against this model (`glip.vqa_head_files.load_vqa_head`)."""
        head, vocabulary = load_vqa_head(path, self.model, check_base)
        self.answerer = QuestionAnswerer(self.model, head, vocabulary, self.tokenizer)
        logger.info("VQA head %s (%d answers)", path, len(vocabulary))

    def answer(self, images: Sequence[ImageSource] | ImageSource, questions: Sequence[str], top_k: int = 5,
               batch_size: int = 1, cancelled: Callable[[], bool] | None = None) -> list[ImageAnswers]:
        """Ask every question of every image.

        Args:
            images: paths, PIL images or HxWx3 RGB arrays (one or a list).
            questions: everyday English questions, each within the model's token window.
            top_k: answers kept per question, best first (at most the vocabulary's size).
            batch_size: images per forward pass, at least 1.
            cancelled: polled between passes; True stops with `glip.engine.DetectionCancelled`.

        Raises:
            ValueError: a model without a VQA head, no or an empty question, one longer than the window.
        """
        sources = [images] if not isinstance(images, (list, tuple)) else list(images)
        return self.answer_each(sources, [questions] * len(sources), top_k, batch_size, cancelled)

    @torch.inference_mode()
    def answer_each(self, images: Sequence[ImageSource], questions: Sequence[Sequence[str]], top_k: int = 5,
                    batch_size: int = 1, cancelled: Callable[[], bool] | None = None) -> list[ImageAnswers]:
        """Ask each image its own questions: ``questions[i]`` of ``images[i]`` (a VQA evaluation's
        shape); arguments and errors as `answer`. The questions of ``batch_size`` images share the
        text side's and the fusion's passes."""
        if self.answerer is None:
            raise ValueError(NO_VQA_HEAD)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        sources = list(images)
        if not sources:
            raise ValueError("no images given")
        if len(questions) != len(sources):
            raise ValueError(f"{len(questions)} question lists for {len(sources)} images: give one list per image")
        questions = [check_questions(own, self.tokenizer, self.max_length) for own in questions]  # before any image
        results = []
        for start in range(0, len(sources), batch_size):
            batch_sources = sources[start:start + batch_size]
            batch = prepare_images(batch_sources, self.model.config.input).to(self.device)
            per_image = self.answerer.answer_each(batch, questions[start:start + batch_size], top_k, cancelled)
            for source, (h0, w0), qa in zip(batch_sources, batch.original_sizes, per_image):
                results.append(ImageAnswers(os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
                                            w0, h0, qa))
        return results

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
            return chunk_class_names(list(classes), self.max_length, self.tokenizer)
        if phrases is not None and len(phrases) == 0:
            phrases = None
        return chunk_caption_prompt(build_caption_prompt(caption, phrases), self.max_length, self.tokenizer)

    # ------------------------------------------------------------------ detection
    @torch.inference_mode()
    def detect(self, images: Sequence[ImageSource] | ImageSource, classes: Sequence[str] | None = None,
               caption: str | None = None, phrases: Sequence[str | tuple[int, int]] | None = None,
               threshold: float = 0.5, max_detections: int | None = None, batch_size: int = 1,
               progress: bool = False, adapter: str | None = None, all_names: bool = False,
               cancelled: Callable[[], bool] | None = None, masks: bool = False) -> list[ImageDetections]:
        """Detect the prompt's phrases in each image.

        Args:
            images: paths, PIL images or HxWx3 RGB arrays (one or a list).
            classes: class names (detection prompt "a. b. c."); any number, chunked to fit the
                model's token window (256 for the official models, 64 for glip-nano).
            caption: a free caption; ``phrases`` are strings found in it or (start, end) character
                spans; without phrases, its noun phrases (spaCy, optional) or the whole caption. A
                caption longer than the token window runs as windows of its phrases
                (`glip.prompts.chunk_caption_prompt`).
            threshold: minimum score of a returned detection.
            max_detections: per image, at least 1 (default: the model config's, 100).
            batch_size: images per forward pass, at least 1.
            adapter: the name of a tuned task (`add_adapter`): its prompt and tuned tensors are used;
                ``classes`` may then be left out.
            all_names: for a class list (or an adapter's categories), keep every (box, name) pair
                above the threshold, as the official demo does. The default shows each object once,
                under its best-scoring name (`glip.modeling.postprocess.one_name_per_object`).
                Captions always keep every phrase's boxes: two phrases may name one object.
            cancelled: polled between batches and prompt chunks; when it returns True the call
                raises `glip.engine.DetectionCancelled` (a server drops an abandoned request so).
            masks: also each detection's instance mask (``segmentation``: COCO RLE of the image's
                size; ``mask_area``: its pixels), from the model's mask head on the same forward
                pass; a model without a mask head raises ValueError.
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
        if max_detections is not None and (isinstance(max_detections, bool) or not isinstance(max_detections, int)
                                           or max_detections < 1):
            raise ValueError(f"max_detections must be a whole number of at least 1, got {max_detections!r}")
        if masks and self.model.mask_head is None:
            raise ValueError(NO_MASK_HEAD)
        single = not isinstance(images, (list, tuple))
        sources = [images] if single else list(images)
        if not sources:
            raise ValueError("no images given")
        chunks = self.build_prompts(classes, caption, phrases, adapter)
        all_phrases = [p for chunk in chunks for p in chunk.prompt.phrases]
        caption_text = caption if caption is not None else " ".join(c.prompt.caption for c in chunks)
        merge_names = caption is None and not all_names
        results = []
        starts = range(0, len(sources), batch_size)
        for start in tqdm(starts, desc="detect", unit="batch", disable=not progress):
            if cancelled is not None and cancelled():
                raise DetectionCancelled("detection cancelled")
            batch_sources = sources[start:start + batch_size]
            batch = prepare_images(batch_sources, self.model.config.input).to(self.device)
            with self.adapter_applied(adapter):
                # merging names frees places under the cap: cap after it, at most as wide as asked
                engine_cap = None if merge_names and max_detections is not None else max_detections
                if masks:
                    per_image = self.engine.detect_with_masks(batch, chunks, engine_cap, min_score=threshold,
                                                              cancelled=cancelled)
                else:
                    per_image = self.engine.detect(batch, chunks, engine_cap, cancelled=cancelled)
            for source, (h0, w0), found in zip(batch_sources, batch.original_sizes, per_image):
                detections = found.detections if masks else found
                kept = (detections.scores >= threshold).nonzero().flatten()  # rows of `detections`
                if merge_names:
                    merged = one_name_per_object(detections.select(kept))
                    merged = merged.select(torch.arange(min(len(merged), max_detections or len(merged))))
                    kept = kept[_rows_of(merged, detections.select(kept))]
                result = ImageDetections(
                    image=os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
                    width=w0, height=h0, caption=caption_text, phrases=all_phrases,
                    detections=_to_detections(detections.select(kept), all_phrases))
                if masks:
                    _add_masks(result, found.select(kept))
                results.append(result)
        return results

    # ------------------------------------------------------------------ captioning
    @torch.inference_mode()
    def caption(self, images: Sequence[ImageSource] | ImageSource, beam: int = 1, grounded: bool = False,
                max_tokens: int | None = None, threshold: float = 0.0, batch_size: int = 1,
                progress: bool = False) -> list[ImageCaption]:
        """Describe each image with the model's caption head (a model trained by ``glip caption-train``).

        Args:
            images: paths, PIL images or HxWx3 RGB arrays (one or a list).
            beam: beam width; 1 is greedy search.
            grounded: also box each noun phrase of the caption (spaCy) with the same model, in
                detection mode: ``phrases`` gets, per phrase, its best box of score >= ``threshold``
                (bbox_xyxy and score None when it has none).
            max_tokens: the length limit in word pieces (default and most: the model's
                ``caption.max_tokens``); a caption that reaches it is cut off and flagged ``truncated``.
            batch_size: images per forward pass.
        """
        if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
            raise ValueError(f"beam must be a whole number of at least 1, got {beam!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        captioner = Captioner(self.model, self.tokenizer)  # raises when the model has no caption head
        sources = [images] if not isinstance(images, (list, tuple)) else list(images)
        if not sources:
            raise ValueError("no images given")
        results = []
        for start in tqdm(range(0, len(sources), batch_size), desc="caption", unit="batch", disable=not progress):
            batch_sources = sources[start:start + batch_size]
            pictures = [load_image(source, name=f"image #{start + i}") for i, source in enumerate(batch_sources)]
            batch = prepare_images(pictures, self.model.config.input).to(self.device)
            generated = captioner.describe(batch, beam=beam, max_tokens=max_tokens)
            for source, picture, caption in zip(batch_sources, pictures, generated):
                result = ImageCaption(image=os.fspath(source) if isinstance(source, (str, os.PathLike)) else None,
                                      width=picture.width, height=picture.height, caption=caption.text,
                                      truncated=caption.truncated)
                if grounded:
                    result.phrases = self._ground_caption(picture, caption.text, threshold)
                results.append(result)
        return results

    def _ground_caption(self, picture: ImageSource, caption: str, threshold: float) -> list[CaptionPhrase]:
        """Each noun phrase of ``caption`` with its best box in ``picture`` (the detection pass)."""
        spans = caption_noun_phrases(caption)
        if not spans:
            return []
        found = self.detect(picture, caption=caption, phrases=spans, threshold=threshold)[0]
        best: dict[int, Detection] = {}
        for detection in found.detections:  # highest score first
            best.setdefault(detection.phrase_index, detection)
        return [CaptionPhrase(caption[s:e], [s, e], best[i].bbox_xyxy if i in best else None,
                              best[i].score if i in best else None) for i, (s, e) in enumerate(spans)]


def _rows_of(subset: Detections, detections: Detections) -> torch.Tensor:
    """Where each row of ``subset`` (rows of ``detections``, reordered or dropped) is in ``detections``.

    A row is found by its label, score and box, which it keeps exactly: rows equal in all three
    are interchangeable (after the class-aware NMS there are none, unless its threshold is 1)."""
    if not len(subset):
        return torch.zeros(0, dtype=torch.long, device=subset.scores.device)
    same_box = (subset.boxes[:, None, :] == detections.boxes[None, :, :]).all(dim=2)  # [n, N]
    same = (same_box & (subset.labels[:, None] == detections.labels[None, :])
            & (subset.scores[:, None] == detections.scores[None, :]))  # [n, N]
    return same.to(torch.uint8).argmax(dim=1)


def _add_masks(result: ImageDetections, found: MaskedDetections) -> None:
    """Each detection's mask in the original image as COCO RLE (`MaskedDetections.encoded_masks`)."""
    for detection, (rle, area) in zip(result.detections, found.encoded_masks(result.height, result.width)):
        detection.segmentation, detection.mask_area = rle, area


def _to_detections(detections: Detections, phrases: list[str]) -> list[Detection]:
    return [Detection([round(float(v), 2) for v in box], float(score), phrases[int(label)], int(label))
            for box, score, label in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                         detections.labels.tolist())]

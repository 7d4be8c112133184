"""What the HTTP API takes and returns, and the batching key of a detection request.

``POST /v1/detect`` takes either a JSON body (`DetectJSONRequest`, the image base64-encoded) or a
multipart form with the same fields and the image as a file. Both become a `DetectKey` (what must
match for requests to share a forward pass) plus the image.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

MASKS_DESCRIPTION = ("also each detection's instance mask (segmentation: COCO RLE of the uploaded image's size); "
                     "needs a model with a mask head (GET /v1/models: model.mask_head), else 400")


class DetectOptions(BaseModel):
    """The prompt and threshold of a detection request (`request_schema` documents which fields go
    together and the server's limits)."""

    classes: list[str] | str | None = Field(
        None, description="class names, as a list or one comma-separated string", examples=[["star", "square"]])
    caption: str | None = Field(None, description="a free caption to ground instead of classes",
                                examples=["a red star next to a square"])
    phrases: list[str] | None = Field(None, description="phrases of the caption to ground (default: its noun "
                                                        "phrases, or the whole caption)")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="minimum score of a returned detection")
    adapter: str | None = Field(None, description="name of a loaded adapter (tuned task); see GET /v1/models")
    all_names: bool = Field(False, description="keep every (box, name) pair above the threshold; by default "
                                               "each object is shown once, under its best-scoring name")
    masks: bool = Field(False, description=MASKS_DESCRIPTION)


class DetectJSONRequest(DetectOptions):
    """A JSON detection request."""

    image: str = Field(..., description="the image file's bytes, base64-encoded (a data: URL is accepted too)")
    all_names: bool = Field(False, strict=True, description="true keeps every (box, name) pair above the threshold; "
                                                            "by default each object is shown once, under its "
                                                            "best-scoring name")
    masks: bool = Field(False, strict=True, description=MASKS_DESCRIPTION)


class RLEOut(BaseModel):
    size: list[int] = Field(..., description="[height, width] of the uploaded image")
    counts: str = Field(..., description="pycocotools' compressed run lengths (column-major, background first)")


class DetectionOut(BaseModel):
    bbox_xyxy: list[float] = Field(..., description="x1, y1, x2, y2 in pixels of the uploaded image")
    score: float
    phrase: str
    phrase_index: int = Field(..., description="index into phrases")
    segmentation: RLEOut | None = Field(None, description="with masks=true: the instance mask as COCO RLE "
                                                          "(pycocotools.mask.decode reads it); absent otherwise")
    mask_area: int | None = Field(None, description="with masks=true: the mask's pixels; absent otherwise")


class DetectResponse(BaseModel):
    """``ImageDetections.to_dict()`` of the predictor."""

    image: str | None = Field(None, description="the uploaded file's name (multipart), else null")
    width: int
    height: int
    caption: str
    phrases: list[str]
    detections: list[DetectionOut]


class ErrorResponse(BaseModel):
    detail: str = Field(..., description="what was wrong and how to fix it")


def request_schema(max_classes: int, max_prompt_chars: int, multipart: bool) -> dict:
    """The OpenAPI schema of a ``POST /v1/detect`` body: what the server accepts, with its limits.

    Exactly one prompt: ``classes``, or ``caption`` (with optional ``phrases``), or an ``adapter``
    alone (its own categories; ``classes`` may then repeat them). The route validates the same
    rules itself (`detect_key`, `glip.serving.limits`); this is their documentation.
    """
    text = {"type": "string", "maxLength": max_prompt_chars}
    names = {"type": "array", "items": {"type": "string"}, "maxItems": max_classes}
    if multipart:
        image = {"type": "string", "format": "binary", "description": "an image file (PNG, JPEG, ...)"}
        classes = {**text, "description": f"comma-separated class names (or repeat the field); at most "
                                          f"{max_classes} names and {max_prompt_chars} characters"}
        phrases = {**text, "description": "a phrase of the caption to ground (repeat the field)"}
        all_names = {"type": "boolean", "default": False, "description": "'true' keeps every (box, name) pair"}
        masks = {"type": "boolean", "default": False}
    else:
        image = {"type": "string", "description": "the image file's bytes, base64-encoded (or a data: URL)"}
        classes = {"anyOf": [names, text], "description": f"class names, a list or one comma-separated string; "
                                                          f"at most {max_classes} names and {max_prompt_chars} "
                                                          "characters"}
        phrases = {"type": "array", "items": {"type": "string"}, "description": "phrases of the caption to ground"}
        all_names = {"type": "boolean", "default": False}
        masks = {"type": "boolean", "default": False}
    masks["description"] = MASKS_DESCRIPTION
    all_names["description"] = ("keep every (box, name) pair above the threshold; by default each object is "
                                "shown once, under its best-scoring name")
    one_of = [
        {"title": "detect classes", "required": ["classes"], "not": {"required": ["caption"]}},
        {"title": "ground a caption", "required": ["caption"],
         "not": {"anyOf": [{"required": ["classes"]}, {"required": ["adapter"]}]}},
        {"title": "an adapter's own categories", "required": ["adapter"],
         "not": {"anyOf": [{"required": ["classes"]}, {"required": ["caption"]}]}},
    ]
    return {
        "type": "object",
        "required": ["image"],
        "properties": {
            "image": image,
            "classes": classes,
            "caption": {**text, "description": f"a free caption to ground, at most {max_prompt_chars} characters "
                                               "and the model's token window (max_text_tokens, GET /v1/models)"},
            "phrases": phrases,
            "threshold": {"type": "number", "default": 0.5, "minimum": 0, "maximum": 1,
                          "description": "minimum score of a returned detection"},
            "adapter": {"type": "string", "description": "name of a loaded adapter (GET /v1/models)"},
            "all_names": all_names,
            "masks": masks,
        },
        "oneOf": one_of,
        "dependentRequired": {"phrases": ["caption"]},
    }


@dataclass(frozen=True)
class DetectKey:
    """What two requests must share to run in one forward pass (hashable)."""

    classes: tuple[str, ...] | None
    caption: str | None
    phrases: tuple[str, ...] | None
    threshold: float
    adapter: str | None
    all_names: bool = False
    masks: bool = False


class PromptError(ValueError):
    """A request whose prompt cannot be used (empty, or both classes and a caption): 422."""


def split_classes(classes: list[str] | str | None) -> tuple[str, ...] | None:
    """``"a, b"`` or ``["a", "b, c"]`` -> ``("a", "b", "c")``; blanks dropped; None when none is left."""
    if classes is None:
        return None
    parts = [classes] if isinstance(classes, str) else list(classes)
    names = tuple(name.strip() for part in parts for name in part.split(",") if name.strip())
    return names or None


def detect_key(options: DetectOptions) -> DetectKey:
    """Normalise a request's prompt into its batching key; refuse empty or ambiguous prompts."""
    classes = split_classes(options.classes)
    caption = (options.caption or "").strip() or None
    phrases = tuple(p.strip() for p in options.phrases or [] if p.strip()) or None
    if classes is None and caption is None and options.adapter is None:
        raise PromptError("empty prompt: give classes (e.g. classes=star,square) or a caption to detect")
    if classes is not None and caption is not None:
        raise PromptError("give either classes or a caption, not both")
    if phrases is not None and caption is None:
        raise PromptError("phrases need a caption to be found in")
    if caption is not None and options.adapter:
        raise PromptError(f"adapter '{options.adapter}' detects its own categories; leave out the caption "
                          "(or the adapter)")
    return DetectKey(classes, caption, phrases, float(options.threshold), options.adapter or None,
                     options.all_names, options.masks)


# ---------------------------------------------------------------------------------- captioning
MAX_CAPTION_BEAM = 8  # a wider beam costs a request proportionally more and rarely helps


class CaptionOptions(BaseModel):
    """The options of a ``POST /v1/caption`` request."""

    beam: int = Field(1, ge=1, le=MAX_CAPTION_BEAM, description="beam width; 1 is greedy search")
    grounded: bool = Field(False, description="also box each noun phrase of the caption with the same model")
    threshold: float = Field(0.0, ge=0.0, le=1.0, description="grounded: lowest score of a phrase's box "
                                                               "(0: its best box)")


class CaptionJSONRequest(CaptionOptions):
    """A JSON caption request."""

    image: str = Field(..., description="the image file's bytes, base64-encoded (a data: URL is accepted too)")
    grounded: bool = Field(False, strict=True, description="also box each noun phrase of the caption")


class CaptionPhraseOut(BaseModel):
    phrase: str
    span: list[int] = Field(..., description="[start, end) character span in the caption")
    bbox_xyxy: list[float] | None = Field(None, description="its best box in pixels of the uploaded image, or null")
    score: float | None = None


class CaptionResponse(BaseModel):
    """``ImageCaption.to_dict()`` of the predictor."""

    image: str | None = Field(None, description="the uploaded file's name (multipart), else null")
    width: int
    height: int
    caption: str
    phrases: list[CaptionPhraseOut] = Field(..., description="grounded: the caption's noun phrases; else empty")
    truncated: bool = Field(..., description="decoding reached the model's length limit before ending the caption")


@dataclass(frozen=True)
class CaptionKey:
    """What two caption requests must share to run in one forward pass (hashable)."""

    beam: int
    grounded: bool
    threshold: float


def caption_key(options: CaptionOptions) -> CaptionKey:
    return CaptionKey(int(options.beam), bool(options.grounded), float(options.threshold))

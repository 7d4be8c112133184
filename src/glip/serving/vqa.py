"""``POST /v1/vqa``: one image and questions about it -> each question's best answers.

The request is a multipart form (``image`` file, ``question`` repeated or one field per question,
``top_k``) or JSON (`VqaJSONRequest`, the image base64-encoded). It goes through the same pieces
as a detection: the body and pixel limits, the decoding pool, the model's one worker thread (the
`Batcher` groups requests with the same questions and ``top_k``), the timeout and disconnect
handling, the request counters. Limits of its own, checked before the model runs:

- at most ``max_prompt_chunks`` questions (each costs one pass of the text side and fusion, as a
  prompt chunk does) and ``max_prompt_chars`` characters together: 413;
- each question within the model's token window: 413; an empty question: 422;
- a model without a VQA head: 400.

The answer is ``ImageAnswers.to_dict()``: ``{image, width, height, qa: [{question, answers:
[{answer, score}]}]}``, answers best first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from glip.predictor import GLIPPredictor
from glip.serving.config import ServeConfig
from glip.serving.limits import RequestTooLarge
from glip.serving.schemas import PromptError
from glip.serving.uploads import DecodedImage, UploadError, read_request

MAX_TOP_K = 100
QUESTION_FIELDS = ("question", "questions")  # form fields that carry a question (repeatable)


class VqaOptions(BaseModel):
    """The questions and the number of answers of a VQA request."""

    questions: list[str] | str = Field(..., description="the questions, a list or one question",
                                       examples=[["how many stars are there?", "what colour is the square?"]])
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="answers per question, best first")


class VqaJSONRequest(VqaOptions):
    """A JSON VQA request."""

    image: str = Field(..., description="the image file's bytes, base64-encoded (a data: URL is accepted too)")


class AnswerOut(BaseModel):
    answer: str
    score: float = Field(..., description="the head's sigmoid score in [0, 1]")


class QuestionAnswersOut(BaseModel):
    question: str
    answers: list[AnswerOut]


class VqaResponse(BaseModel):
    """``ImageAnswers.to_dict()`` of the predictor."""

    image: str | None = Field(None, description="the uploaded file's name (multipart), else null")
    width: int
    height: int
    qa: list[QuestionAnswersOut]


@dataclass(frozen=True)
class VqaKey:
    """What two VQA requests must share to run in one forward pass (hashable)."""

    questions: tuple[str, ...]
    top_k: int


def vqa_key(options: VqaOptions) -> VqaKey:
    """The batching key of a request; an empty question list or question is a `PromptError` (422)."""
    questions = [options.questions] if isinstance(options.questions, str) else list(options.questions)
    if not questions:
        raise PromptError("no question: send at least one, e.g. question='how many stars are there?'")
    for index, question in enumerate(questions):
        if not question.strip():
            raise PromptError(f"question {index + 1} is empty: ask something, e.g. 'what colour is the star?'")
    return VqaKey(tuple(question.strip() for question in questions), int(options.top_k))


def check_vqa_request(key: VqaKey, predictor: GLIPPredictor, config: ServeConfig) -> None:
    """The server's limits on a VQA request (see the module docstring)."""
    if predictor.answerer is None:
        raise UploadError("this server's model has no VQA answer head (GET /v1/models: model.vqa_head is false): "
                          "start the server with a model trained by glip vqa-train", status_code=400)
    if len(key.questions) > config.max_prompt_chunks:
        raise RequestTooLarge(f"{len(key.questions)} questions in one request; this server answers at most "
                              f"{config.max_prompt_chunks} (--max-prompt-chunks): split them over several requests")
    chars = sum(len(question) for question in key.questions)
    if chars > config.max_prompt_chars:
        raise RequestTooLarge(f"the questions are {chars} characters; this server takes at most "
                              f"{config.max_prompt_chars}: send fewer or shorter questions")
    for index, question in enumerate(key.questions):
        tokens = len(predictor.tokenizer(question)["input_ids"])
        if tokens > predictor.max_length:
            raise RequestTooLarge(f"question {index + 1} is {tokens} tokens; the model reads at most "
                                  f"{predictor.max_length} (max_text_tokens in GET /v1/models): shorten it")


def answer_batch(predictor: GLIPPredictor, key: VqaKey, images: list[DecodedImage],
                 cancelled: Callable[[], bool]) -> list[dict]:
    """The model call of a group of VQA requests sharing ``key`` (on the batcher's worker thread)."""
    results = predictor.answer([image.pixels for image in images], list(key.questions), top_k=key.top_k,
                               batch_size=len(images), cancelled=cancelled)
    answers = []
    for image, result in zip(images, results):
        data = result.to_dict()
        data["width"], data["height"] = image.original_size
        answers.append(data)
    return answers


async def read_vqa_request(request) -> tuple[VqaOptions, bytes, str | None]:
    """The options, the image bytes and the file name of a JSON or multipart VQA request."""
    return await read_request(request, VqaJSONRequest, VqaOptions, _form_values, max_fields=256)


def _form_values(form) -> dict:
    values: dict = {"questions": [q for name in QUESTION_FIELDS for q in form.getlist(name)]}
    if form.getlist("top_k"):
        values["top_k"] = form.getlist("top_k")[-1]
    return values


def vqa_request_schema(max_questions: int, max_chars: int, multipart: bool) -> dict:
    """The OpenAPI schema of a ``POST /v1/vqa`` body, with the server's limits."""
    question = {"type": "string", "minLength": 1, "maxLength": max_chars}
    if multipart:
        image = {"type": "string", "format": "binary", "description": "an image file (PNG, JPEG, ...)"}
        questions = {**question,
                     "description": f"a question (repeat the field, at most {max_questions})"}
        key = "question"
    else:
        image = {"type": "string", "description": "the image file's bytes, base64-encoded (or a data: URL)"}
        questions = {"anyOf": [{"type": "array", "items": question, "minItems": 1, "maxItems": max_questions},
                               question], "description": f"the questions (at most {max_questions})"}
        key = "questions"
    return {"type": "object", "required": ["image", key],
            "properties": {"image": image, key: questions,
                           "top_k": {"type": "integer", "default": 5, "minimum": 1, "maximum": MAX_TOP_K,
                                     "description": "answers per question, best first"}}}

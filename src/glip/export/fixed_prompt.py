"""A detector with its prompt baked in: the image tensor in, every location's box and phrase scores out.

The text side of a prompt does not depend on the image, so it is computed once here (the text
encoder, and an adapter's prompt embedding when one is applied) and stored as buffers. What is
left depends on the image only: Swin + FPN, the head (its fusion still reads the stored text
features), the phrase scores (mean of the sigmoid token scores over each phrase's tokens) and the
decoded boxes. This is the graph `glip.export.onnx` writes; the candidate selection, NMS and the
cap stay outside it, in `glip.export.runtime.postprocess` (numpy), because their output sizes
depend on the scores.

Example:
    >>> chunks = chunk_class_names(["star", "circle"], model.config.text.max_length)  # doctest: +SKIP
    >>> detector = FixedPromptDetector(model, chunks).eval()  # doctest: +SKIP
    >>> out = detector(batch.tensor)  # doctest: +SKIP
    >>> out["boxes"].shape, out["scores"].shape, out["centerness"].shape  # doctest: +SKIP
    (torch.Size([1, 1, A, 4]), torch.Size([1, A, 2]), torch.Size([1, 1, A]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from glip.modeling.box_coder import BoxCoder
from glip.modeling.glip import GLIP
from glip.modeling.text_encoder import TextFeatures
from glip.prompts import PromptChunk

OUTPUT_NAMES = ("boxes", "scores", "centerness")


def phrase_membership(token_indices: list[list[int]], num_tokens: int) -> torch.Tensor:
    """[L, P] with 1 / n_p on the n_p tokens of phrase p: token probabilities @ it = phrase scores."""
    membership = torch.zeros(num_tokens, len(token_indices))
    for phrase, tokens in enumerate(token_indices):
        membership[tokens, phrase] = 1.0 / len(tokens)
    return membership


class FixedPromptDetector(nn.Module):
    """``model`` with the text features of ``chunks`` stored; forward takes only the images.

    Args:
        model: the detector, in eval mode (with an adapter applied if the prompt is a task's).
        chunks: the prompt, split to fit the token window (labels are the chunks' phrases in order).

    The text side runs on each chunk's real tokens only, as the detection engine does by default.
    """

    def __init__(self, model: GLIP, chunks: Sequence[PromptChunk]) -> None:
        super().__init__()
        if not chunks:
            raise ValueError("no prompt chunks given: pass at least one class name")
        self.model = model
        self.box_coder = BoxCoder()
        self.phrases = [phrase for chunk in chunks for phrase in chunk.prompt.phrases]
        self.num_chunks = len(chunks)
        self.chunk_of_phrase = [index for index, chunk in enumerate(chunks) for _ in chunk.prompt.phrases]
        device = model.head.bias_lang.device
        with torch.no_grad():
            for index, chunk in enumerate(chunks):
                length = chunk.tokens.num_tokens
                ids = chunk.tokens.input_ids[None, :length].to(device)  # [1, L]
                mask = chunk.tokens.attention_mask[None, :length].to(device)  # [1, L]
                text = model.encode_text(ids, mask)
                self.register_buffer(f"text_hidden_{index}", text.hidden.detach().clone())  # [1, L, D]
                self.register_buffer(f"text_mask_{index}", text.mask.detach().clone())  # [1, L]
                self.register_buffer(f"text_embedded_{index}", text.embedded.detach().clone())  # [1, L, D]
                membership = phrase_membership(chunk.tokens.token_indices, length).to(device)
                self.register_buffer(f"membership_{index}", membership)  # [L, P_chunk]

    def text_features(self, index: int, batch: int) -> TextFeatures:
        """The stored text features of chunk ``index``, repeated for ``batch`` images."""
        hidden = getattr(self, f"text_hidden_{index}")
        mask = getattr(self, f"text_mask_{index}")
        embedded = getattr(self, f"text_embedded_{index}")
        return TextFeatures(hidden=hidden.expand(batch, -1, -1), mask=mask.expand(batch, -1),
                            embedded=embedded.expand(batch, -1, -1))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: [B, 3, H, W] normalised BGR, padded to the model's size divisibility.

        Returns:
            ``boxes`` [B, K, A, 4] xyxy in network-input pixels (decoded, not clipped) and
            ``centerness`` [B, K, A] (sigmoid) per prompt chunk k (a fused head's tower depends on
            the chunk's text), ``scores`` [B, A, P] phrase scores (before centerness) of all chunks'
            phrases, chunk after chunk; A runs over the locations of P3..P7 in order, row-major
            within a level. Phrase p reads the boxes and centerness of its chunk (`chunk_of_phrase`).
        """
        model = self.model
        features = model.encode_images(images)
        batch = images.shape[0]
        first = features.stages[0] if model.config.head.alignment_skip else None
        anchors = torch.cat(model.anchors(features.levels))  # [A, 4]
        scores, boxes, centerness = [], [], []
        for index in range(self.num_chunks):
            head = model.head(features.levels, self.text_features(index, batch), first)
            probs = torch.cat(head.token_logits, dim=1).sigmoid()  # [B, A, L]
            scores.append(torch.matmul(probs, getattr(self, f"membership_{index}")))  # [B, A, P_chunk]
            # With fusion the tower, hence the boxes and centerness, depend on the chunk's text.
            deltas = torch.cat([d.flatten(2) for d in head.box_regression], dim=2).transpose(1, 2)  # [B, A, 4]
            decoded = self.box_coder.decode(deltas.reshape(-1, 4), anchors.repeat(batch, 1))  # [B*A, 4]
            boxes.append(decoded.reshape(batch, -1, 4))
            centerness.append(torch.cat([c.flatten(1) for c in head.centerness], dim=1).sigmoid())  # [B, A]
        return {"boxes": torch.stack(boxes, dim=1), "scores": torch.cat(scores, dim=2),
                "centerness": torch.stack(centerness, dim=1)}

    def level_sizes(self, height: int, width: int) -> list[int]:
        """Locations per level (H_l * W_l for P3..P7) for an input of ``height`` x ``width``."""
        with torch.no_grad():
            probe = torch.zeros(1, 3, height, width, device=self.model.head.bias_lang.device)
            levels = self.model.encode_images(probe).levels
        return [int(level.shape[-2] * level.shape[-1]) for level in levels]

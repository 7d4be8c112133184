"""The shared tokenizer is safe to call from several threads at once (the server checks a request's
prompt in one thread while the model thread tokenizes another padded to the window): a fast
tokenizer keeps its padding and truncation settings as state that each call sets, so unguarded
calls could see another thread's padding."""

from __future__ import annotations

import sys
import threading

from glip.prompts import piece_token_costs
from glip.tokenizer import load_tokenizer


def test_concurrent_padded_and_unpadded_calls_do_not_mix_settings() -> None:
    tokenizer = load_tokenizer()
    names = ["person", "bicycle", "traffic light"]
    expected = piece_token_costs(names, tokenizer)  # [2, 2, 3]: word pieces + the "."
    stop, seen = threading.Event(), []

    def pad_to_the_window() -> None:
        while not stop.is_set():
            tokenizer("person. bicycle.", max_length=64, padding="max_length", truncation=True)

    padder = threading.Thread(target=pad_to_the_window)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to meet the race if it is there
    padder.start()
    try:
        for _ in range(3000):
            seen.append(piece_token_costs(names, tokenizer))
    finally:
        stop.set()
        padder.join()
        sys.setswitchinterval(interval)
    assert [costs for costs in seen if costs != expected] == []

"""Hugging Face Grounding DINO with random weights for ``benchmarks/latency.py``: the model alone and
the user path (PIL + processor + model + post-processing). Nothing is downloaded: the text config is
a local ``BertConfig`` and the prompt is tokenized with ``glip.tokenizer.load_tokenizer``."""

from __future__ import annotations

import argparse
import time
import traceback
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

POST_THRESHOLD = 0.35  # box threshold of Grounding DINO's demo
POST_TEXT_THRESHOLD = 0.25


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_grounding_dino(tiny: bool):
    """GroundingDinoForObjectDetection with random weights: the default (Swin-T, 900 queries) config
    with BERT-base text sizes, or with ``tiny`` a toy config (Swin embed 8, d_model 32, two layers
    each) that runs in milliseconds; nothing is downloaded."""
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig

    if tiny:
        text_config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=37, max_position_embeddings=512, type_vocab_size=2)
        backbone = SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7,
                              out_features=["stage2", "stage3", "stage4"])
        config = GroundingDinoConfig(
            backbone_config=backbone, text_config=text_config, d_model=32, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=32,
            num_queries=10, encoder_n_points=2, decoder_n_points=2, num_feature_levels=4)
    else:
        text_config = BertConfig(  # bert-base-uncased sizes
            vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
        )
        config = GroundingDinoConfig(text_config=text_config)
    if getattr(config, "use_pretrained_backbone", False):
        config.use_pretrained_backbone = False  # older versions: never fetch backbone weights
    return GroundingDinoForObjectDetection(config).eval(), config


def build_processor(tokenizer, height: int, width: int):
    """The processor, resizing an H x W picture to itself (800x1333 is its default resizing), or None
    (with the reason printed) if it cannot be built."""
    try:
        from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

        size = {"shortest_edge": min(height, width), "longest_edge": max(height, width)}
        return GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size=size), tokenizer=tokenizer)
    except Exception as error:  # version differences: time the forward pass only
        print(f"  Grounding DINO processor unavailable ({type(error).__name__}: {error})", flush=True)
        return None


def prepare_grounding_dino(args: argparse.Namespace, device: torch.device, picture: Path, class_names: list[str],
                           user_path: bool) -> tuple[str, Callable, torch.nn.Module] | None:
    """(row name, step, model) for the model alone or, with ``user_path``, the picture file through the
    processor, model and post-processing; None (the reason printed) if it cannot be built."""
    from glip.prompts import build_class_prompt
    from glip.tokenizer import load_tokenizer

    label = "Grounding-DINO (toy config)" if args.tiny else "Grounding-DINO-T"
    name = f"{label} {'user path' if user_path else 'model alone'}"
    print(f"building {label} (random weights) ...", flush=True)
    try:
        torch.manual_seed(args.seed)
        model, config = build_grounding_dino(args.tiny)
        model = model.to(device)
    except Exception as error:
        print(f"  could not build Grounding DINO with this transformers version: "
              f"{type(error).__name__}: {error}", flush=True)
        traceback.print_exc()
        return None
    print(f"  {label} parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
          f"(backbone {config.backbone_config.model_type}, embed_dim "
          f"{getattr(config.backbone_config, 'embed_dim', '?')}, depths "
          f"{getattr(config.backbone_config, 'depths', '?')}; {config.num_queries} queries)", flush=True)
    tokenizer = load_tokenizer()
    caption = build_class_prompt(class_names).caption
    processor = build_processor(tokenizer, args.height, args.width)
    if user_path:
        if processor is None:
            print(f"  {name}: not timed without the processor", flush=True)
            return None
        return name, _user_path_step(model, processor, picture, caption, device), model
    return name, _model_alone_step(model, processor, tokenizer, caption, args, device), model


def _model_alone_step(model, processor, tokenizer, caption: str, args: argparse.Namespace,
                      device: torch.device) -> Callable:
    text = tokenizer(caption, return_tensors="pt")  # real length, no padding to 256
    text = {key: value.to(device) for key, value in text.items()}
    print(f"  prompt {caption!r}: {text['input_ids'].shape[1]} tokens (not padded)", flush=True)
    height, width = args.height, args.width
    pixel_values = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(args.seed)).to(device)
    pixel_mask = torch.ones(1, height, width, dtype=torch.long, device=device)
    if processor is None:
        print("  Grounding DINO post-processing unavailable: timing its forward pass only", flush=True)

    def step(timings) -> None:
        _synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode():
            outputs = model(pixel_values=pixel_values, pixel_mask=pixel_mask, input_ids=text["input_ids"],
                            attention_mask=text["attention_mask"], token_type_ids=text["token_type_ids"])
            _synchronize(device)
            forward_done = time.perf_counter()
            if processor is not None:
                processor.post_process_grounded_object_detection(
                    outputs, text["input_ids"], threshold=POST_THRESHOLD, text_threshold=POST_TEXT_THRESHOLD,
                    target_sizes=[(height, width)])
                _synchronize(device)
        finished = time.perf_counter()
        timings.add("total", finished - started)
        timings.add("forward", forward_done - started)
        timings.add("post-processing", finished - forward_done)

    return step


def _user_path_step(model, processor, picture: Path, caption: str, device: torch.device) -> Callable:
    def step(timings) -> None:
        _synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode():
            with Image.open(picture) as file:
                image = file.convert("RGB")
            inputs = processor(images=image, text=caption, return_tensors="pt").to(device)
            _synchronize(device)
            prepared = time.perf_counter()
            outputs = model(**inputs)
            _synchronize(device)
            forward_done = time.perf_counter()
            processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=POST_THRESHOLD, text_threshold=POST_TEXT_THRESHOLD,
                target_sizes=[(image.height, image.width)])
            _synchronize(device)
        finished = time.perf_counter()
        timings.add("total", finished - started)
        timings.add("file + processor", prepared - started)
        timings.add("forward", forward_done - prepared)
        timings.add("post-processing", finished - forward_done)

    return step

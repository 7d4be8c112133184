"""Captioning: training the caption head (`glip caption-train`), evaluating it with BLEU-4 and CIDEr
(`glip caption-eval`), and describing pictures (`glip caption`)."""

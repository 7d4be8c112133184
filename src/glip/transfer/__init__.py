"""Transfer to a user's task: prompt engineering, prompt tuning, linear probing, full fine-tuning,
few-shot sampling, and adapters that let one base model serve many tuned tasks.

Modules: `adapter` (files, fingerprints, switching), `fewshot`, `modes`, `task` (prompts),
`finetune` (the ``glip finetune`` pipeline), `cli`.
"""

"""Exporting a detector with its prompt baked in (``glip export``), and running the exported file.

`fixed_prompt` (the module exported), `tracing` (the model in a form the tracer exports),
`onnx_export` (writing and checking the file) and `runtime` (numpy pre- and post-processing around
the graph; no torch needed). Nothing is imported here, so that `glip.export.runtime` loads without torch.
"""

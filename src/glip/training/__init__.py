"""Training: ATSS assignment, the GLIP loss, and the trainer."""

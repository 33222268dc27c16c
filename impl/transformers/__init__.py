"""Section 4 — transformers: attention everywhere, pre-training, scaling, alignment."""

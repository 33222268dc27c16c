"""Section 3 — sequence modeling: recurrence, gating, embeddings, attention over RNN states."""

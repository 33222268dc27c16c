"""Section 5 — image generation: adversarial, variational, diffusion and contrastive models."""

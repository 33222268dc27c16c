"""Section 1 — deep neural networks: backpropagation, convolution, depth, segmentation."""

"""Fine-tunes: train on a backend that can, relay the training callback, generate with it."""

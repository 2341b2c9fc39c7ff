"""FSRCNN training: model definition, data, loop and evaluation (needs torch)."""

"""Pipeline stages: each wraps the modules of one step (T5, video tokenizer, ...) behind ``Stage``."""

"""The tiny pretrained-model fixtures of the LLM tests, shared with the bad-input catalogue."""

from llm.conftest import checkpoint, data, run_dir, tokenizer  # noqa: F401

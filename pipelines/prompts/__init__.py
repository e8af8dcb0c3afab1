"""Prompt expansion with a small instruction-tuned LLM (Qwen2.5), with checks and fallbacks."""

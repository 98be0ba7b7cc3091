"""The serving role: a SageMaker-compatible model server with dynamic batching and safe model swaps."""

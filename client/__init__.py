"""`sotai.client`: typed access to the SotaiGenerator Triton models (gRPC by default, HTTP too)."""

from .types import GenerateRequest, GenerateResult, TagsResult
from .sync import SotaiClient

__all__ = ["SotaiClient", "GenerateRequest", "GenerateResult", "TagsResult"]

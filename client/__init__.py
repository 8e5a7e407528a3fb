"""`sotai.client`: typed access to the SotaiGenerator Triton models (gRPC by default, HTTP/REST too).

- `SotaiClient(url, protocol="grpc"|"http")`: generate / stream / tags / candidates / models_ready
- `AsyncSotaiClient`: the same, for asyncio
- `GenerateRequest(text=... | tags=(...) | prompt=..., params=GenerationParams(...))`
- `Progress` events (stage, step, total, preview PNG, Dart's tags) and `GenerateResult`
"""

from .aio import AsyncSotaiClient
from .errors import TritonUnavailable
from .sync import SotaiClient
from .types import GenerateRequest, GenerateResult, Progress, TagsResult

__all__ = ["SotaiClient", "AsyncSotaiClient", "GenerateRequest", "GenerateResult", "Progress", "TagsResult",
           "TritonUnavailable"]

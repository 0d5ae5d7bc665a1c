"""Typed client of the LLM router's RouterService.

```python
from clients.llm import RouterClient, Task

async with RouterClient("127.0.0.1:50051") as client:
    stream = client.generate("hi", task=Task.SYNTHESIS)
    async for chunk in stream.text():
        print(chunk, end="")
    result = await stream.collect()
    vectors = (await client.embed(["a", "b"])).embeddings

    # Thinking, structured output, tools: events arrive as ReasoningChunk, TextChunk and
    # ToolCallChunk; the collected result joins them.
    result = await client.generate(
        "Classify this note",
        reasoning=ReasoningLevel.OFF,
        response_format=ResponseFormat.schema("label", {"type": "object"}),
        tools=[Tool("search_memory", "Search the memory graph", {"type": "object"})],
    ).collect()
    result.reasoning, result.text, result.tool_calls
```

Failures raise :class:`RouterError` subclasses decoded from the router's rich error status.
:class:`ControlClient` is the control service's operator client; its failures are
:class:`ControlError` subclasses (``VersionConflict``, ``IllegalTransition``, ...).
:class:`SyncRouterClient` is the blocking twin for scripts. ``clients.llm.testing`` holds a fake
router for tests.
"""

from clients.llm._async_client import RouterClient
from clients.llm._async_stream import GenerateStream
from clients.llm._channel import DEFAULT_CHANNEL_OPTIONS
from clients.llm._control_client import DEFAULT_CONTROL_TIMEOUT, ChangeArgs, ControlClient
from clients.llm._control_errors import (
    ControlError,
    ControlTimeout,
    ControlUnavailable,
    IllegalTransition,
    InvalidArgument,
    NotAuthorised,
    PreconditionFailed,
    VersionConflict,
    map_control_error,
)
from clients.llm._convert import MessageLike
from clients.llm._enums import (
    ErrorCode,
    FinishReason,
    Provider,
    ProviderLike,
    ReasoningLevel,
    Role,
    RoleLike,
    Task,
    TaskLike,
    ToolChoiceMode,
)
from clients.llm._errors import (
    ERROR_DOMAIN,
    EmbeddingServiceError,
    FeatureUnsupportedError,
    InvalidRequestError,
    LLMInvalidResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    ModelNotFoundError,
    OverloadedError,
    RequestCancelledError,
    RouterError,
    RouterInternalError,
    map_rpc_error,
)
from clients.llm._features import (
    ForceTool,
    Image,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoiceLike,
)
from clients.llm._options import DEFAULT_TIMEOUT, REQUEST_ID_METADATA_KEY, CallOptions
from clients.llm._sync_client import SyncRouterClient
from clients.llm._sync_stream import SyncGenerateStream
from clients.llm._types import (
    Continuation,
    EmbedResult,
    GenerateEvent,
    GenerateResult,
    Message,
    ReasoningChunk,
    StreamEnd,
    StreamStart,
    TextChunk,
    Timings,
    TokenLogprob,
    ToolCallChunk,
    TopLogprob,
    Usage,
)

__all__ = [
    "DEFAULT_CHANNEL_OPTIONS",
    "DEFAULT_CONTROL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "ERROR_DOMAIN",
    "REQUEST_ID_METADATA_KEY",
    "CallOptions",
    "ChangeArgs",
    "Continuation",
    "ControlClient",
    "ControlError",
    "ControlTimeout",
    "ControlUnavailable",
    "EmbedResult",
    "EmbeddingServiceError",
    "ErrorCode",
    "FeatureUnsupportedError",
    "FinishReason",
    "ForceTool",
    "GenerateEvent",
    "GenerateResult",
    "GenerateStream",
    "IllegalTransition",
    "Image",
    "InvalidArgument",
    "InvalidRequestError",
    "LLMInvalidResponseError",
    "LLMTimeoutError",
    "LLMUnavailableError",
    "Message",
    "MessageLike",
    "ModelNotFoundError",
    "NotAuthorised",
    "OverloadedError",
    "PreconditionFailed",
    "Provider",
    "ProviderLike",
    "ReasoningChunk",
    "ReasoningLevel",
    "RequestCancelledError",
    "ResponseFormat",
    "Role",
    "RoleLike",
    "RouterClient",
    "RouterError",
    "RouterInternalError",
    "StreamEnd",
    "StreamStart",
    "SyncGenerateStream",
    "SyncRouterClient",
    "Task",
    "TaskLike",
    "TextChunk",
    "Timings",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallChunk",
    "ToolChoiceLike",
    "ToolChoiceMode",
    "TopLogprob",
    "Usage",
    "VersionConflict",
    "map_control_error",
    "map_rpc_error",
]

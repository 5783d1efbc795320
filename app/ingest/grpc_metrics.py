"""gRPC server metrics: an interceptor counting every call by method and status code and
timing it (`laas_grpc_requests_total`, `laas_grpc_request_seconds`, app/runtime/metrics.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from app.runtime.metrics import METRICS


def _code(context: grpc.aio.ServicerContext, failed: BaseException | None) -> str:
    """The call's status: the code the handler set or aborted with; OK when it returned."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))
    return "OK" if failed is None else "UNKNOWN"


@contextmanager
def _counted(method: str, context: grpc.aio.ServicerContext) -> Iterator[None]:
    """Count and time the call around the block (its status from what the block raised)."""
    started, failed = time.monotonic(), None
    try:
        yield
    except BaseException as exc:
        failed = exc
        raise
    finally:
        METRICS.inc("laas_grpc_requests_total", method=method, code=_code(context, failed))
        METRICS.observe("laas_grpc_request_seconds", time.monotonic() - started, method=method)


def _unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with _counted(method, context):
            return await behavior(request, context)

    return timed


def _streaming(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def timed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with _counted(method, context):
            result = behavior(request, context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            else:  # a coroutine that writes with context.write
                await result

    return timed


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times the calls of every registered method (unknown methods are not
    counted: their label values would be the caller's choice)."""

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=_unary(method, handler.unary_unary))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=_unary(method, handler.stream_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=_streaming(method, handler.unary_stream))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=_streaming(method, handler.stream_stream))
        return handler

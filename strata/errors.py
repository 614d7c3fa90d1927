"""The one exception hierarchy for everything a caller or a config file can cause.

Each class carries the HTTP status and the OpenAI error `type` it maps to; the HTTP edge turns
any `StrataError` into `{"error": {"message", "type", "code", "param"}}` in one place
(`strata.http_errors`). Internal invariants use `assert`, never these classes.

    StrataError
    ├── ConfigError             bad config file / env value / CLI option (not HTTP)
    ├── ModelLoadError          a model path, file or architecture that cannot be served
    ├── BenchTargetError        `strata bench`: the endpoint under test cannot be used (not HTTP)
    ├── ClusterError            `strata deploy`: the cluster is unreachable or too small (not HTTP)
    ├── UpstreamError           502: an upstream failed (after retries and failover)
    └── RequestError            anything an HTTP caller sent or caused
        ├── InvalidRequestError     400
        │   └── ContentPolicyError  400, code content_policy (the guard refused it)
        ├── AuthenticationError     401
        ├── PermissionDeniedError   403
        ├── NotFoundError           404
        ├── PayloadTooLargeError    413
        ├── RateLimitError          429 (+ Retry-After)
        └── OverloadedError         503 (+ Retry-After)
"""

from __future__ import annotations


class StrataError(Exception):
    """Base of every error strata raises on purpose."""

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class ConfigError(StrataError):
    """A config file, environment variable or option has a bad value; the message names it."""


class ModelLoadError(StrataError):
    """A model cannot be loaded; the message names the file and what was wrong with it."""


class BenchTargetError(StrataError):
    """The endpoint a benchmark points at cannot be used: unreachable, refuses the key, or serves
    no model; the message names the URL."""


class ClusterError(StrataError):
    """`strata deploy`: no cluster answers at the address, or it cannot run the deployment (too
    few resources, a replica that fails to start); the message says which and what to do."""


class RequestError(StrataError):
    """Something a caller sent or caused; always maps to a 4xx or a 503."""

    status_code = 400
    error_type = "invalid_request_error"
    retry_after_s: float | None = None


class InvalidRequestError(RequestError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(RequestError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDeniedError(RequestError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(RequestError):
    status_code = 404
    error_type = "not_found_error"


class PayloadTooLargeError(RequestError):
    status_code = 413
    error_type = "invalid_request_error"


class RateLimitError(RequestError):
    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class OverloadedError(RequestError):
    status_code = 503
    error_type = "overloaded_error"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class EngineError(StrataError):
    """The engine failed while running a step; not the caller's fault (500)."""

    status_code = 500
    error_type = "server_error"


class UpstreamError(StrataError):
    """An upstream model endpoint failed and no other could take the request (502). The message
    names the upstream; it reaches the caller, so it holds no credentials or internal detail."""

    status_code = 502
    error_type = "upstream_error"


class ContentPolicyError(InvalidRequestError):
    """The guard refused a request (400, code `content_policy`): a prompt injection, a secret or
    personal datum under a `block` policy. `param` names the field; the message names the
    detector, never the matched text."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message, code="content_policy", param=param)

"""What can go wrong talking to a provider, in the terms routing and jobs care about.

`retryable` means: the provider did not take the job, so another backend may be tried.
"""

from __future__ import annotations


class ProviderError(Exception):
    outcome = "error"
    retryable = False

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.status = status  # the HTTP status, when the error came from one


class ProviderUnavailable(ProviderError):
    """Could not connect (refused, DNS, reset before an answer)."""

    outcome = "unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    outcome = "timeout"
    retryable = True


class ProviderServerError(ProviderError):
    outcome = "server_error"
    retryable = True


class ProviderRateLimited(ProviderError):
    outcome = "rate_limited"
    retryable = True


class ProviderAuthFailed(ProviderError):
    """The backend's own credentials were refused: its fault, not the request's."""

    outcome = "auth_failed"
    retryable = True


class ProviderMisconfigured(ProviderError):
    """This backend lacks what the request needs (a model file, a finetune) on its side.

    That is the backend's installation or account, not the request: another backend may
    have it, so the job may fail over; the backend itself is up, so it is not ejected.
    """

    outcome = "misconfigured"
    retryable = True


class ProviderRejected(ProviderError):
    """The provider refused the request itself (validation); no other backend will differ."""

    outcome = "rejected"


class ProviderMaybeAccepted(ProviderError):
    """The provider may have taken the job without saying so (e.g. Astria's 504).

    Resubmitting elsewhere could bill twice, so the job stays on this backend and waits
    for the callback (or a poll) until its deadline.
    """

    outcome = "maybe_accepted"


class ProviderBadAnswer(ProviderError):
    """An answer we cannot understand: malformed, truncated or of the wrong type."""

    outcome = "bad_answer"


class Unsupported(Exception):
    """This backend cannot carry out the request at all (model missing, feature absent)."""

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in reasons.items()))
        self.reasons = reasons

"""Helpers for table-driven conversions that record every inexact change as a warning."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters.normalized import GenerationRequest


@dataclass
class Notes:
    """Warnings and the normalized fields that could not be honoured exactly."""

    provider: str
    warnings: list[str] = field(default_factory=list)
    inexact: list[str] = field(default_factory=list)

    def changed(
        self, name: str, before: object, after: object, why: str, fields: Sequence[str] = ()
    ) -> None:
        """Record `name before → after (why)`; `fields` are the request fields it touches."""
        self.warnings.append(f"{name} {_show(before)} → {_show(after)} ({why})")
        for touched in fields or (name,):
            if touched not in self.inexact:
                self.inexact.append(touched)

    def dropped(self, name: str, value: object, why: str | None = None) -> None:
        reason = why or f"{self.provider} does not support it"
        self.warnings.append(f"{name} {_show(value)} dropped ({reason})")
        if name not in self.inexact:
            self.inexact.append(name)

    def clamp(self, name: str, value: float, low: float, high: float) -> float:
        clamped = min(max(value, low), high)
        if clamped != value:
            self.changed(name, value, clamped, f"{self.provider} allows {_show(low)}–{_show(high)}")
        return clamped

    def drop_unsupported(
        self, request: GenerationRequest, enhancements: Sequence[str], *, style: bool = True
    ) -> None:
        """Warn about the enhancements (and style, colour grading) this provider lacks."""
        if request.enhance is not None:
            for flag in enhancements:
                if getattr(request.enhance, flag):
                    self.dropped(f"enhance.{flag}", True)
        if style and request.style is not None:
            self.dropped("style", request.style.value)
        if style and request.color_grading is not None:
            self.dropped("color_grading", request.color_grading.value)

    def nearest(self, name: str, value: int, allowed: Sequence[int]) -> int:
        """Snap to the nearest allowed value (ties go up)."""
        best = min(allowed, key=lambda a: (abs(a - value), -a))
        if best != value:
            shown = ", ".join(str(a) for a in allowed)
            self.changed(name, value, best, f"{self.provider} allows {shown}")
        return best


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def requested_size(
    request: GenerationRequest, long_side: int, notes: Notes
) -> tuple[int, int] | None:
    """The pixel size the request asks for (None: it asked for none).

    An aspect ratio becomes the size with `long_side`, both sides multiples of 8; when that
    rounding moves the ratio, the warning says so.
    """
    if request.width is None and request.aspect_ratio is None:
        return None
    width, height = request.size(long_side)
    if request.aspect_ratio is not None:
        actual = width / height
        if abs(actual - request.aspect_ratio.ratio) > 1e-9:
            notes.changed(
                "aspect_ratio",
                request.aspect_ratio.value,
                f"{width}x{height}",
                f"sides are multiples of 8; ratio {actual:.3f}",
            )
    return width, height


def fit_within(width: int, height: int, limit: int, multiple: int = 8) -> tuple[int, int]:
    """Scale (width, height) down to fit `limit` on both sides, keeping the ratio."""
    scale = min(1.0, limit / max(width, height))
    fit_w = max(multiple, int(width * scale) // multiple * multiple)
    fit_h = max(multiple, int(height * scale) // multiple * multiple)
    return fit_w, fit_h


def split(total: int, most: int) -> list[int]:
    """`total` images in submissions of at most `most` each: 8 by 4 is [4, 4], 6 is [4, 2]."""
    full, rest = divmod(total, most)
    return [most] * full + ([rest] if rest else [])


def work_units(width: int, height: int, steps: int, images: int) -> float:
    """Size of a job in megapixel-steps: what a GPU's time is proportional to."""
    return width * height * steps * images / 1_000_000

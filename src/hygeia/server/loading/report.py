"""What a bulk load reports: per-line errors and the totals (re-exported by ``loading``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

FIRST_ERRORS = 100  # errors kept for printing; the count covers all of them


@dataclass(frozen=True)
class LoadError:
    source: str  # file name or URL as given
    line: int  # 1-based NDJSON line number; 0 when the error is about the whole source
    message: str  # a human sentence, naming the element (FHIRPath expression) where known

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}" if self.line \
            else f"{self.source}: {self.message}"


@dataclass
class LoadReport:
    resources: int = 0  # resources stored
    by_type: dict[str, int] = field(default_factory=dict)  # stored per resource type
    errors: int = 0  # count of all errors
    first_errors: list[LoadError] = field(default_factory=list)  # the first 100, for printing
    seconds: float = 0.0
    skipped: int = 0  # files not read: the load journal says they were loaded already

    def summary(self) -> str:
        rate = self.resources / self.seconds if self.seconds else 0.0
        return (f"Loaded {self.resources} resources in {self.seconds:.1f} s "
                f"({rate:,.0f} resources/s); {self.errors} errors.")

    def stored(self, resource_type: str, count: int = 1) -> None:
        self.resources += count
        self.by_type[resource_type] = self.by_type.get(resource_type, 0) + count


class ErrorSink:
    """Counts errors, keeps the first ones and passes each to the caller's callback."""

    def __init__(self, report: LoadReport,
                 on_error: Callable[[LoadError], None] | None) -> None:
        self._report = report
        self._on_error = on_error

    def __call__(self, error: LoadError) -> None:
        self._report.errors += 1
        if len(self._report.first_errors) < FIRST_ERRORS:
            self._report.first_errors.append(error)
        if self._on_error is not None:
            self._on_error(error)

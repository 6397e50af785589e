"""``with`` support for things that run between ``start()`` and ``stop()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Running:
    """A context manager that calls :meth:`start` on entry and :meth:`stop` on exit."""

    __slots__ = ()

    def start(self) -> None:
        """Nothing to start unless a subclass says so (its constructor did the work)."""

    def stop(self) -> None:
        """Release what :meth:`start` or the constructor took."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""Named implementations of one pluggable part (a face detector, a diarizer, a voice embedding, an
active-speaker model), chosen by a setting.

A registry knows its built-in implementations by name and import path, and loads one only when it
is asked for, so that reading settings never imports a model library. ``register`` adds another
implementation (a plug-in, or a stand-in in a test); settings accept every registered name, and an
unknown one is an error that lists them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from socialpipe.pipeline.contracts.errors import InputError


class Registry:
    """Implementations of the setting ``setting`` (``section.key``) by name."""

    def __init__(self, setting: str, builtins: dict[str, str]):
        self.setting = setting
        self._paths = dict(builtins)  # name -> "module:attribute", imported on first use
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, implementation: Any = None) -> Any:
        """Add ``implementation`` under ``name`` (also usable as a decorator); returns it."""
        if implementation is None:
            return lambda target: self.register(name, target)
        self._loaded[name] = implementation
        return implementation

    def unregister(self, name: str) -> None:
        """Remove a registered implementation (built-ins stay)."""
        self._loaded.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self._paths, *self._loaded]))

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __str__(self) -> str:
        return str(list(self.names))

    def check(self, name: str) -> str:
        """``name`` when it is registered, else an InputError naming the setting and the choices."""
        if name not in self:
            raise InputError(f"config {self.setting}: {name!r} is not one of {list(self.names)}")
        return name

    def get(self, name: str) -> Any:
        """The implementation registered as ``name`` (imported now if it is a built-in not used yet)."""
        self.check(name)
        if name not in self._loaded:
            module, _, attribute = self._paths[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return self._loaded[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """An instance: the implementation registered as ``name`` called with the arguments."""
        factory: Callable[..., Any] = self.get(name)
        return factory(*args, **kwargs)

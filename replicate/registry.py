"""A name -> object registry (backbones, methods, protocols share this one implementation), and
:class:`Lazy` references by which registry entries name their torch implementations."""
from __future__ import annotations

from typing import Callable, Dict, Generic, List, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, key: Callable[[T], str]):
        self.kind, self._key = kind, key
        self._items: Dict[str, T] = {}

    def register(self, item: T) -> T:
        name = self._key(item)
        if not name or name in self._items:
            raise KeyError(f"{self.kind} name {name!r} missing or registered twice")
        self._items[name] = item
        return item

    def names(self) -> List[str]:
        return sorted(self._items)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} '{name}'; registered: "
                           f"{', '.join(self.names())}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items


class Lazy:
    """A callable named by ``"package.module:attr"``, imported on first call.

    Registry entries name their implementations this way (as mmengine configs name a ``type``),
    so a registry and its entries import no torch and none of the modules that implement them:
    config validation reads names and defaults; only building a model imports the code.
    ``__module__``, ``__name__`` and ``__qualname__`` are the target's, so code that asks an
    entry's builder or adapter for its module keeps working.  Two references to the same target
    compare and hash equal.
    """

    def __init__(self, target: str):
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"lazy reference {target!r} must be 'package.module:attr'")
        self.target = target
        self.__module__, self.__name__, self.__qualname__ = module, attr, attr

    def resolve(self):
        """The object named by the reference (imports its module)."""
        import importlib

        obj = importlib.import_module(self.__module__)
        for part in self.__name__.split("."):
            obj = getattr(obj, part)
        return obj

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lazy) and other.target == self.target

    def __hash__(self) -> int:
        return hash(("Lazy", self.target))

    def __repr__(self) -> str:
        return f"Lazy({self.target!r})"


def resolved(obj):
    """``obj``, or the object a :class:`Lazy` reference names."""
    return obj.resolve() if isinstance(obj, Lazy) else obj

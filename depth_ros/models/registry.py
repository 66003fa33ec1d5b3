"""One place for model variants: ``@register_model(name)`` and ``create_model(name, **kwargs)``.

Importing this module does not import torch: the built-in models are imported on first use,
so runtimes that only need the metadata (onnxruntime inference) work without torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from torch import nn

# Modules whose import registers the built-in models.
_BUILTIN_MODULES = ("depth_ros.models.mono_cnn", "depth_ros.models.diffusion",
                    "depth_ros.models.depth_anything_v2", "depth_ros.models.mono_c2f",
                    "depth_ros.models.fusion", "depth_ros.models.completion")
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

BuilderT = TypeVar("BuilderT", bound=Callable[..., Any])


def register_model(name: str) -> Callable[[BuilderT], BuilderT]:
    """Class or function decorator that makes ``create_model(name, ...)`` build it."""

    def decorate(builder: BuilderT) -> BuilderT:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"model name {name!r} is already registered by "
                             f"{_REGISTRY[name].__module__}.{_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = builder
        return builder

    return decorate


def _import_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _import_builtins()
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with its constructor arguments.

    Raises:
        ValueError: unknown name (the message lists the registered ones) or arguments the
            model's constructor does not take.
    """
    _import_builtins()
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: "
                         f"{', '.join(list_models())}") from None
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for model {name!r}: {exc}") from None
    return builder(**kwargs)

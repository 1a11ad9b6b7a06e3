"""The one small interface every generator backend implements, and the registry of backends.

A backend is looked up by name; its `version` is stored with each `Generation` so scores and
gate decisions can be traced to the code that made the image.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (e.g. its weights are not configured); the message says why."""


class GenerationFailed(RuntimeError):
    """The input cannot be staged by this backend; the message is shown in the job log."""


@dataclass
class ProductInput:
    image: np.ndarray  # H x W x 3 uint8 RGB, product photo on a plain background
    category: str
    title: str = ""
    mask: np.ndarray | None = None  # H x W float32 alpha in [0, 1] when already known


@dataclass
class Candidate:
    image: np.ndarray  # H x W x 3 uint8 RGB staged result
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable provenance
    product_mask: np.ndarray | None = None  # where the product was placed (H x W float32)


class GeneratorBackend(ABC):
    name: str
    version: str

    def availability(self) -> tuple[bool, str]:
        """(True, "") when the backend can run; otherwise (False, reason for the user)."""
        return True, ""

    @abstractmethod
    def generate(self, product: ProductInput, *, seed: int, num_candidates: int = 1, **params: Any) -> list[Candidate]:
        """Stage the product; raise GenerationFailed with a clear message for unusable input."""


_REGISTRY: dict[str, type[GeneratorBackend]] = {}
# Modules whose import registers the built-in backends; loaded on first lookup so that importing
# this interface alone stays cheap (the diffusion module pulls in torch and diffusers).
BUILTIN_BACKEND_MODULES = ("generation.ml.copy_paste", "generation.ml.diffusion", "generation.ml.pix2pix")
_builtins_loaded = False


def _load_builtin_backends() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_BACKEND_MODULES:
            importlib.import_module(module)


def register(backend_cls: type[GeneratorBackend]) -> type[GeneratorBackend]:
    if backend_cls.name in _REGISTRY:
        raise ValueError(f"backend {backend_cls.name!r} registered twice")
    _REGISTRY[backend_cls.name] = backend_cls
    return backend_cls


def backend_names() -> list[str]:
    _load_builtin_backends()
    return sorted(_REGISTRY)


def get_backend_class(name: str) -> type[GeneratorBackend]:
    _load_builtin_backends()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(backend_names()) or 'none'}")

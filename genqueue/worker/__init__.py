"""RQ workers that own the failure path: classify, decide, then retry or dead-letter atomically."""

from .classes import GenSimpleWorker, GenWorker, build_worker

__all__ = ["GenSimpleWorker", "GenWorker", "build_worker"]

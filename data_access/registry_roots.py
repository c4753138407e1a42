"""Open a registry root from its address: a folder, `s3://bucket/prefix`, `sagemaker://group`.

Remote roots keep their verified cache under `cache_dir` (e.g. `<workspace>/.registry-cache`)
and expose `degraded`, `last_error` and `degraded_message`; a local folder is never degraded.
Use `registry_status(root)` to read those uniformly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_access.registry import CACHE_DIR, LocalRegistryRoot, RegistryRoot
from data_access.registry_s3 import S3RegistryRoot
from data_access.registry_sagemaker import SageMakerRegistryRoot
from explainers.errors import RegistryError

__all__ = ["CACHE_DIR", "OPENERS", "open_root", "registry_status"]

Opener = Callable[[str, Path, dict[str, Any]], RegistryRoot]


def _local(spec: str, cache_dir: Path, opts: dict[str, Any]) -> RegistryRoot:
    if opts:
        raise RegistryError(f"{', '.join(sorted(opts))} only apply to s3:// and sagemaker:// "
                            f"registries, not the folder {spec}")
    return LocalRegistryRoot(spec.removeprefix("file://"))


def _s3(spec: str, cache_dir: Path, opts: dict[str, Any]) -> RegistryRoot:
    return S3RegistryRoot.from_uri(spec, cache_dir=cache_dir, **opts)


def _sagemaker(spec: str, cache_dir: Path, opts: dict[str, Any]) -> RegistryRoot:
    return SageMakerRegistryRoot.from_uri(spec, cache_dir=cache_dir, **opts)


OPENERS: dict[str, Opener] = {"": _local, "file": _local, "s3": _s3, "sagemaker": _sagemaker}


def open_root(spec: str, *, cache_dir: Path, **opts: Any) -> RegistryRoot:
    """The root `spec` names. `opts` (None values ignored) go to the remote root: endpoint_url,
    region_name, cooldown_s, and for SageMaker artifact_uri and image_uri."""
    spec = spec.strip()
    if not spec:
        raise RegistryError("Empty registry address; use a folder, s3://bucket/prefix or "
                            "sagemaker://<model-package-group>")
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    opener = OPENERS.get(scheme)
    if opener is None:
        raise RegistryError(f"Unknown registry address {spec!r}; use a folder, "
                            "s3://bucket/prefix or sagemaker://<model-package-group>")
    try:
        return opener(spec, Path(cache_dir), {k: v for k, v in opts.items() if v is not None})
    except TypeError as exc:  # an option this kind of root does not take
        if "unexpected keyword argument" not in str(exc):
            raise
        raise RegistryError(f"{spec}: {exc}") from None


def registry_status(root: RegistryRoot) -> tuple[bool, str | None]:
    """(degraded, the message to show) for any root; local folders are never degraded."""
    degraded = bool(getattr(root, "degraded", False))
    return degraded, getattr(root, "degraded_message", None) if degraded else None

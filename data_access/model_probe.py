"""The first load of untrusted model bytes happens here, in a short-lived child process.

The parent writes the (checksum- and structure-verified) bytes to a private temp file and
starts `python -m data_access.model_probe`; the child caps its own address space
(RLIMIT_AS), CPU time and core dumps before importing any framework, parses the file,
predicts one row of NaNs and exits 0. A signal (e.g. SIGSEGV), a timeout, running out of
memory or a parse error means the model is refused with one line. Verdicts are cached by
SHA-256 (with the framework version and the schema the test row is built from) in memory and
in a small JSON file, so each artifact is probed once. Nothing here unpickles: the request is
JSON on stdin, the answer a JSON file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explainers.errors import ArtifactFormatError, RegistryError

if TYPE_CHECKING:
    from data_access.registry import Manifest

VERDICTS_FILE = "probe-verdicts.json"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_BYTES = 2 << 30  # the framework's own footprint (~0.8 GiB of address space)
MEMORY_PER_ARTIFACT_BYTE = 8  # on top of the base: a parsed model is a few times its file
ENV_TIMEOUT = "FRAUDLENS_PROBE_TIMEOUT_S"
ENV_MEMORY = "FRAUDLENS_PROBE_MEMORY_BYTES"
_EXIT_REFUSED, _EXIT_MEMORY, _EXIT_SETUP = 2, 3, 4
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Verdict:
    """The probe's answer for one artifact: ok, or the one-line reason it was refused."""

    sha256: str
    ok: bool
    reason: str
    framework: str
    library_version: str
    checked_at: str
    millis: float = 0.0
    schema: str = ""  # digest of the feature schema the row was predicted with

    @property
    def key(self) -> str:
        return f"{self.sha256}:{self.schema}"

    def message(self, key: str) -> str:
        return f"{key}: {self.reason}"


def verdict_key(manifest: Manifest) -> str:
    """Verdicts belong to the artifact's bytes and the schema its test row is built from."""
    return f"{manifest.sha256}:{schema_digest(manifest)}"


def schema_digest(manifest: Manifest) -> str:
    text = json.dumps(manifest.feature_schema.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ModelProbe:
    """Probe artifacts in a child process and remember the verdicts by SHA-256."""

    def __init__(self, verdict_path: str | os.PathLike[str] | None = None, *,
                 timeout_s: float | None = None, memory_bytes: int | None = None) -> None:
        self.verdict_path = Path(verdict_path) if verdict_path else None
        self.timeout_s = timeout_s or _env_number(ENV_TIMEOUT, DEFAULT_TIMEOUT_S)
        self.memory_bytes = memory_bytes or int(_env_number(ENV_MEMORY, DEFAULT_MEMORY_BYTES))
        self._verdicts: dict[str, Verdict] = {}
        self._inflight: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def cached(self, manifest: Manifest) -> Verdict | None:
        """The remembered verdict for these bytes and schema under the installed framework."""
        key, version = verdict_key(manifest), library_version(manifest.framework)
        with self._lock:
            found = self._verdicts.get(key)
            if found is None or found.library_version != version:
                self._verdicts.update(self._read_file())
                found = self._verdicts.get(key)
        if found is None or found.framework != manifest.framework or \
                found.library_version != version:
            return None
        return found

    def ensure(self, manifest: Manifest, data: bytes) -> Verdict:
        """Probe `data` (already checksum- and format-checked) unless a verdict is cached;
        raise ArtifactFormatError with one line when the model is refused."""
        verdict = self.cached(manifest)
        if verdict is None:
            with self._lock_for(verdict_key(manifest)):  # concurrent sessions share one probe
                verdict = self.cached(manifest)
                if verdict is None:
                    verdict = self.run(manifest, data)
                    self.remember(verdict)
        if not verdict.ok:
            raise ArtifactFormatError(verdict.message(manifest.key))
        return verdict

    def _lock_for(self, key: str) -> threading.Lock:
        with self._lock:
            return self._inflight.setdefault(key, threading.Lock())

    def remember(self, verdict: Verdict) -> None:
        """Keep a verdict in memory and, best effort, in the verdict file."""
        from data_access.exports import atomic_write_bytes
        from explainers.errors import ExportError

        with self._lock:
            self._verdicts[verdict.key] = verdict
            if self.verdict_path is None:
                return
            merged = {**self._read_file(), verdict.key: verdict}
            doc = {"verdicts": {k: asdict(v) for k, v in sorted(merged.items())}}
            try:
                self.verdict_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self.verdict_path, json.dumps(doc, indent=1).encode())
            except (OSError, ExportError):
                pass  # an unwritable cache only costs a later probe

    def _read_file(self) -> dict[str, Verdict]:
        if self.verdict_path is None:
            return {}
        try:
            doc = json.loads(self.verdict_path.read_text(encoding="utf-8"))
            return {k: Verdict(**v) for k, v in doc["verdicts"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # missing or damaged: probe again

    def run(self, manifest: Manifest, data: bytes) -> Verdict:
        """Load `data` in a child process under memory and time limits; never raises for
        what the model does, only (RegistryError) when no child could be started."""
        memory = self.memory_bytes + MEMORY_PER_ARTIFACT_BYTE * len(data)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="fraudlens-probe-") as tmp:
            artifact = Path(tmp) / ("artifact" + Path(manifest.artifact).suffix)
            result = Path(tmp) / "result.json"
            artifact.write_bytes(data)
            request = {"framework": manifest.framework, "artifact": str(artifact),
                       "result": str(result), "schema": manifest.feature_schema.to_dict(),
                       "memory_bytes": memory, "cpu_s": int(self.timeout_s) + 5}
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "data_access.model_probe"],
                    input=json.dumps(request).encode(), capture_output=True,
                    timeout=self.timeout_s, env=_child_env(), cwd=tmp, check=False)
                returncode: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                returncode = None
            except OSError as exc:
                raise RegistryError(f"{manifest.key}: cannot start the model probe "
                                    f"({exc.strerror}); nothing was loaded") from None
            if not _ready(result):  # the framework itself did not start: not the model's fault
                raise RegistryError(
                    f"{manifest.key}: the model probe could not start {manifest.framework} "
                    f"({_setup_problem(returncode, result)}); nothing was loaded. Check "
                    f"{ENV_MEMORY} and {ENV_TIMEOUT}")
            reason = _reason(returncode, result, memory, self.timeout_s)
        return Verdict(manifest.sha256, reason is None, reason or "", manifest.framework,
                       library_version(manifest.framework),
                       datetime.now(UTC).isoformat(timespec="seconds"),
                       round((time.perf_counter() - started) * 1000, 1), schema_digest(manifest))


def _ready(result: Path) -> bool:
    return result.with_suffix(".ready").exists()


def _setup_problem(returncode: int | None, result: Path) -> str:
    if returncode is None:
        return "timed out while importing"
    try:
        return _one_line(str(json.loads(result.read_text(encoding="utf-8"))["error"]), 120)
    except (OSError, ValueError, KeyError, TypeError):
        return f"exit status {returncode}"


def _reason(returncode: int | None, result: Path, memory: int, timeout_s: float) -> str | None:
    """None for a clean load, else the one-line reason (without the model's key)."""
    if returncode is None:
        return f"the model file did not finish loading within {timeout_s:g} s and was refused"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGXCPU":
            return (f"the model file did not finish loading within {timeout_s:g} s of CPU "
                    f"({name}) and was refused")
        return f"the model file crashed its parser (signal {name}) and was refused"
    if returncode == _EXIT_MEMORY:
        return (f"the model file needed more than {memory >> 20:,} MiB of memory to load "
                "and was refused")
    try:
        answer = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        answer = {}
    if returncode == 0 and answer.get("ok") is True:
        return None
    detail = _one_line(str(answer.get("error") or f"exit status {returncode}"))
    return f"the model file could not be loaded ({detail}) and was refused"


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _env_number(key: str, default: float) -> float:
    raw = os.environ.get(key, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise RegistryError(f"{key}={raw!r} must be a number") from None
    if value <= 0:
        raise RegistryError(f"{key}={raw!r} must be positive")
    return value


def _child_env() -> dict[str, str]:
    """The parent's environment, one thread per library, few malloc arenas, our code first."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONHASHSEED": "0",
                "PYTHONPATH": os.pathsep.join(p for p in (_REPO_ROOT,
                                                          env.get("PYTHONPATH", "")) if p)})
    return env


_VERSIONS: dict[str, str] = {}


def library_version(framework_name: str) -> str:
    """The installed version of a framework's package ('' when it is not installed)."""
    if framework_name not in _VERSIONS:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _VERSIONS[framework_name] = version(framework_name)
        except PackageNotFoundError:
            _VERSIONS[framework_name] = ""
    return _VERSIONS[framework_name]


# -- the child ----------------------------------------------------------------------------

def _limit_self(memory_bytes: int, cpu_s: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))


def _child(request: dict[str, Any]) -> int:
    """Parse the artifact and predict one all-missing row; write the answer as JSON."""
    _limit_self(int(request["memory_bytes"]), int(request["cpu_s"]))
    result = Path(request["result"])
    try:
        import numpy as np
        import pandas as pd

        from explainers.model import LoadedModel, framework
        from explainers.schema import FeatureSchema

        schema = FeatureSchema.from_dict(request["schema"])
        fw = framework(str(request["framework"]))
        __import__(fw.name)  # the framework itself, before "ready"
    except BaseException as exc:  # the environment, not the model: the parent says so
        result.write_text(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return _EXIT_SETUP
    result.with_suffix(".ready").touch()
    try:
        native = fw.load(Path(request["artifact"]).read_bytes())
        model = LoadedModel("probe", "0", fw.name, schema, native)
        _check_feature_names(native, schema.names)
        row = pd.DataFrame({n: pd.Series([np.nan], dtype="float64") for n in schema.names})
        margin = model.margin(model.prepare(row))
        if margin.shape != (1,) or not np.isfinite(margin).all():
            raise ValueError(f"one row gave margin {margin!r}, not one finite number")
    except MemoryError:
        return _EXIT_MEMORY
    except Exception as exc:  # whatever the framework raises: the model is refused
        text = f"{type(exc).__name__}: {exc}"
        if "bad_alloc" in text or "MemoryError" in text:
            return _EXIT_MEMORY
        result.write_text(json.dumps({"ok": False, "error": _one_line(text)}))
        return _EXIT_REFUSED
    result.write_text(json.dumps({"ok": True, "margin": float(margin[0])}))
    return 0


def _check_feature_names(native: Any, schema_names: list[str]) -> None:
    """A model that names its features must be given exactly the schema's, in order."""
    own = getattr(native, "feature_names", None) or getattr(native, "feature_names_", None)
    if not own or list(own) == list(schema_names):
        return
    extra = [n for n in schema_names if n not in own]
    lacking = [n for n in own if n not in schema_names]
    parts = ([f"the schema lists {', '.join(extra)}, which the model does not use"]
             if extra else []) + ([f"the model needs {', '.join(lacking)}, which the schema "
                                   "lacks"] if lacking else [])
    raise ValueError("; ".join(parts) or "the schema orders the model's features differently")


if __name__ == "__main__":
    sys.exit(_child(json.loads(sys.stdin.buffer.read())))

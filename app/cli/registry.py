"""`fraudlens models push` / `pull`: move versions between the workspace and a remote registry.

    fraudlens models push NAME@VERSION --to s3://bucket/prefix [--endpoint-url URL]
    fraudlens models pull NAME@VERSION --from s3://bucket/prefix [--endpoint-url URL]

`--to`/`--from` also take `sagemaker://<group>` (pull; push needs artifact_uri and image_uri,
which this command does not set) or a folder. Both ends are verified: the artifact is checked
against its manifest's SHA-256 and format before it leaves, uploaded with that SHA-256 for S3 to
check, and on pull checked against S3's checksum, the manifest and the framework's parser before
it is written locally. A version arrives as a `candidate`: promotion is a separate step. No
Streamlit here; errors are `explainers.errors` types, which the CLI prints as one line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_access.registry import Manifest, ModelRegistry, RegistryRoot, check_name
from data_access.registry_roots import CACHE_DIR, open_root, registry_status
from data_access.registry_sagemaker import PACKAGE_KEYS
from explainers.errors import RegistryError
from explainers.model import framework


def add_parsers(models_subparsers: Any) -> None:
    """Add `push` and `pull` to the `fraudlens models` subparsers."""
    for command, help_text, flag, dest, where, func in (
            ("push", "copy a local model version to a remote registry (S3)", "--to", "to",
             "s3://bucket/prefix (or a folder)", cmd_push),
            ("pull", "copy a model version from a remote registry into the workspace", "--from",
             "source", "s3://bucket/prefix, sagemaker://group (or a folder)", cmd_pull)):
        p = models_subparsers.add_parser(command, help=help_text)
        p.add_argument("ref", metavar="NAME@VERSION")
        p.add_argument(flag, required=True, dest=dest, metavar="REGISTRY", help=where)
        p.add_argument("--endpoint-url", dest="endpoint_url",
                       help="S3-compatible endpoint (default: the standard AWS configuration)")
        p.set_defaults(func=func)


def _exact_ref(ref: str) -> str:
    name, sep, version = ref.partition("@")
    if not sep or not version:
        raise RegistryError(f"{ref!r}: name the exact version to copy, as NAME@VERSION")
    check_name("Model name", name)
    check_name("Version", version)
    return ref


def _workspace(args: argparse.Namespace) -> Any:
    from data_access.workspace import Workspace

    return Workspace.at(args.workspace)


def _remote(spec: str, workspace_path: Path, args: argparse.Namespace) -> RegistryRoot:
    return open_root(spec, cache_dir=workspace_path / CACHE_DIR,
                     endpoint_url=getattr(args, "endpoint_url", None))


def _arriving(manifest: Manifest) -> Manifest:
    extra = {k: v for k, v in manifest.extra.items() if k not in PACKAGE_KEYS}
    return replace(manifest, stage="candidate", extra=extra)


def cmd_push(args: argparse.Namespace) -> int:
    ref = _exact_ref(args.ref)
    ws = _workspace(args)
    local = ws.registry
    manifest = local.resolve(ref)
    data = local.verified_artifact(manifest)  # SHA-256 and format, before it leaves
    remote = _remote(args.to, ws.path, args)
    remote.write_version(_arriving(manifest), data)  # uploaded with its SHA-256 for S3 to check
    print(f"pushed {manifest.key} to {remote.description} as a candidate "
          f"(sha256 {manifest.sha256[:12]}…)")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:

    ref = _exact_ref(args.ref)
    ws = _workspace(args)
    remote = ModelRegistry(_remote(args.source, ws.path, args))
    manifest = remote.resolve(ref)
    degraded, message = registry_status(remote.root)
    if degraded:
        print(f"fraudlens: note: {message}", file=sys.stderr)
    data = remote.verified_artifact(manifest)  # S3 checksum, manifest SHA-256, format
    try:
        framework(manifest.framework).load(data)  # the parser accepts it before it is kept
    except Exception as exc:
        raise RegistryError(f"{manifest.key}: {manifest.framework} could not load "
                            f"{manifest.artifact}: {exc}") from None
    local = ws.registry
    arriving = _arriving(manifest)
    local.check_new_key(arriving.name, arriving.version)  # no shared storage key, as register
    local.root.write_version(arriving, data)
    try:
        local.verified_artifact(arriving)  # read back from disk: the local end verifies too
    except Exception:
        shutil.rmtree(Path(local.root.path) / arriving.name / arriving.version,
                      ignore_errors=True)
        raise
    ws.sync_models()
    print(f"pulled {manifest.key} from {remote.root.description} as a candidate "
          f"(sha256 {manifest.sha256[:12]}…)")
    return 0

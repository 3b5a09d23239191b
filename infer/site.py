"""`mnist-gen site`: the page of `mnist-gen serve` as a static folder whose visitors' browsers draw the digits.

The folder holds the page (infer/web, the one page codebase), the model, site.json (what /api/info says on
a server: the model card, the caps) and onnxruntime-web's WebAssembly runtime. That runtime is not in the
wheel: it is the npm registry's onnxruntime-web tarball, downloaded once when a site is first built, checked
against the hash pinned here and kept in a cache (docs/site.md says why and what it costs).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from .errors import UserError
from .files import _UMASK, atomic_path
from .generator import OnnxGenerator, load_generator, model_card
from .images import REQUEST_LIMITS

WEB = Path(__file__).parent / "web"
ORT_WEB_VERSION = "1.30.0"
ORT_WEB_URL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
# The registry's own `dist.integrity` for that tarball (npm view onnxruntime-web@1.30.0 dist.integrity).
ORT_WEB_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
# The WebAssembly build only (no WebGPU/WebGL): its classic script, the Emscripten loader it imports, the binary.
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def cache_dir() -> Path:
    """$MNIST_GEN_CACHE, else $XDG_CACHE_HOME/mnist-gen, else ~/.cache/mnist-gen."""
    if os.environ.get("MNIST_GEN_CACHE"):
        return Path(os.environ["MNIST_GEN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-gen"


def integrity_ok(data: bytes) -> bool:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode() == ORT_WEB_INTEGRITY


def runtime_tarball(given: Path | None = None) -> bytes:
    """onnxruntime-web's npm tarball: `given`, else the cached copy, else downloaded (and cached)."""
    if given is not None:
        try:
            data = given.read_bytes()
        except OSError as e:
            raise UserError(f"--onnxruntime-web {given}: cannot read ({e.strerror or e})") from None
        if not integrity_ok(data):
            raise UserError(f"--onnxruntime-web {given}: not onnxruntime-web-{ORT_WEB_VERSION}.tgz (hash differs)")
        return data
    cached = cache_dir() / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    if cached.is_file() and integrity_ok(data := cached.read_bytes()):
        return data
    try:
        with urllib.request.urlopen(ORT_WEB_URL, timeout=120) as response:
            data = response.read()
    except OSError as e:
        raise UserError(f"cannot download onnxruntime-web from the npm registry ({ORT_WEB_URL}: {e}); "
                        "on a machine without it, pass --onnxruntime-web FILE.tgz (npm pack "
                        f"onnxruntime-web@{ORT_WEB_VERSION})") from None
    if not integrity_ok(data):
        raise UserError(f"{ORT_WEB_URL}: the download does not match the pinned hash; not used")
    with contextlib.suppress(OSError):  # a read-only cache only costs the next build a download
        with atomic_path(cached) as tmp:
            tmp.write_bytes(data)
    return data


def extract_runtime(tarball: bytes, folder: Path) -> None:
    import io

    folder.mkdir()
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for name in ORT_WEB_FILES:
            (folder / name).write_bytes(archive.extractfile(f"package/dist/{name}").read())


def site_info(generator: OnnxGenerator) -> dict:
    """What the page reads at start-up: /api/info's answer, plus where the model and runtime are."""
    return {
        **model_card(generator),
        "model_file": generator.path.name,
        "provider": "onnxruntime-web",
        "provider_note": "",
        "limits": REQUEST_LIMITS,
        "runtime": {"name": "onnxruntime-web", "version": ORT_WEB_VERSION, "folder": "ort/",
                    "script": "ort/ort.wasm.min.js"},
    }


def check_out(out: Path) -> None:
    """--out must be new or an empty folder: a site never overwrites or mixes with other files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder; give a new folder")


def write_site(folder: Path, generator: OnnxGenerator, tarball: bytes) -> None:
    (folder / "static").mkdir()
    shutil.copy(WEB / "index.html", folder / "index.html")
    for name in ("app.js", "noise.js", "render.js", "style.css"):
        shutil.copy(WEB / name, folder / "static" / name)
    shutil.copy(generator.path, folder / generator.path.name)
    (folder / "site.json").write_text(json.dumps(site_info(generator), indent=1) + "\n")
    extract_runtime(tarball, folder / "ort")


def build_site(out: Path, model: str | os.PathLike | None = None, runtime: Path | None = None) -> OnnxGenerator:
    """Write the static site into `out`, all or nothing: built in a hidden sibling folder, renamed at the end."""
    check_out(out)
    generator = load_generator(model, "cpu")
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in {parent} ({e.strerror or e})") from None
    try:
        write_site(tmp, generator, runtime_tarball(runtime))
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's 0700 would hide the site from a web server run by another user
        check_out(out)  # nothing appeared there meanwhile
        os.replace(tmp, out)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write the site ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return generator


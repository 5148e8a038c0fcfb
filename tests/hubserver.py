"""A tiny Hugging Face Hub look-alike served on 127.0.0.1, for tests.

It implements just the slice of the Hub HTTP API that ``huggingface_hub`` (2.4.x) uses for
``create_repo``, ``upload_file``/``upload_folder``/``create_commit``, ``repo_info``/``model_info``,
``list_repo_files``/``list_repo_tree``, ``file_exists``, ``hf_hub_download`` and
``snapshot_download``; ``timm``'s ``hf-hub:`` loading and ``PyTorchModelHubMixin`` sit on top of these.

Design choices (each mirrors what the client checks, see the comments in the handler):

* Every file is "regular" git content: the preupload endpoint never answers ``lfs``, so file bytes come
  inline (base64) in the NDJSON commit body. No LFS batch API, no Xet: the server never returns
  ``X-Xet-*`` headers nor serves ``/xet-*-token`` routes, which is what makes the client choose Xet.
* Storage is a content-addressed blob folder plus one JSON tree per commit, so any old commit sha
  stays downloadable (``snapshot_download`` downloads files at the resolved commit sha).
* Errors carry the ``X-Error-Code`` header that ``huggingface_hub.utils.hf_raise_for_status`` maps to
  ``RepositoryNotFoundError`` / ``RevisionNotFoundError`` / ``RemoteEntryNotFoundError``.

Usage::

    with LocalHub(tmp_path / "hub") as hub:
        ...  # point HF_ENDPOINT at hub.url (see tests/hub_fixture.py for an already-running process)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# URL prefix of each repo type in /resolve urls, and its plural in /api urls (as in huggingface_hub.constants).
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_ROUTE = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(revision|tree|preupload|commit)(?:/(.*))?)?$")
_RESOLVE_ROUTE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


class HubError(Exception):
    """An HTTP error answer; ``code`` goes into ``X-Error-Code`` (what the client maps to an exception type)."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: what the Hub uses as ETag and tree ``oid`` for regular files.

    The client compares it with ``CommitOperationAdd._local_oid`` to skip unchanged files.
    """
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class LocalHub:
    """Hub server on ``127.0.0.1:<free port>`` storing repos under ``root``.

    ``requests`` records ``(method, path)`` of every request, so tests can assert what the client did.
    Writes need an ``Authorization: Bearer <token>`` header (any token, or exactly ``token`` if given);
    reads are anonymous. Repos created without a namespace go to ``username``.
    """

    def __init__(self, root: str | os.PathLike, username: str = "testuser", token: str | None = None):
        self.root = Path(root)
        self.username = username
        self.token = token
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.RLock()  # the server is threaded; commits must not interleave
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LocalHub":
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # Handler threads sit in keep-alive reads while the client's connection pool is open: stop() must
        # neither wait for them (block_on_close) nor be kept alive by them (daemon_threads).
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def environ(self, hf_home: str | os.PathLike, token: str = "hf_local_test_token") -> dict[str, str]:
        """Environment variables that make a *new* process (subprocess) use this hub.

        A process that already imported huggingface_hub needs more: see ``tests/hub_fixture.py``.
        """
        return {
            "HF_ENDPOINT": self.url,
            "HF_HOME": str(hf_home),
            "HF_HUB_CACHE": str(Path(hf_home) / "hub"),
            "HF_XET_CACHE": str(Path(hf_home) / "xet"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",  # also stops the "agent harness" registry fetch
            "HF_TOKEN": self.token or token,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def paths(self, method: str | None = None) -> list[str]:
        """Recorded request paths (optionally only for one HTTP method)."""
        return [p for m, p in list(self.requests) if method is None or m == method]

    # ------------------------------------------------------------------ storage
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / repo_id

    def _refs(self, repo_type: str, repo_id: str) -> dict:
        path = self._repo_dir(repo_type, repo_id) / "refs.json"
        if not path.is_file():
            raise HubError(404, "RepoNotFound", f"Repository Not Found: {repo_id}")
        return json.loads(path.read_text())

    def _resolve(self, repo_type: str, repo_id: str, revision: str) -> tuple[str, dict]:
        """Branch name or full commit sha -> (commit sha, commit record)."""
        refs = self._refs(repo_type, repo_id)
        sha = refs.get(revision, revision)
        commit_file = self._repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        if not re.fullmatch(r"[0-9a-f]{40}", sha) or not commit_file.is_file():
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha, json.loads(commit_file.read_text())

    def _blob(self, oid: str) -> Path:
        return self.root / "blobs" / oid

    def _write_commit(self, repo_type: str, repo_id: str, branch: str, parent: str | None, files: dict, message: str) -> str:
        record = {"parent": parent, "message": message, "date": _now(), "files": files}
        sha = hashlib.sha1(json.dumps(record, sort_keys=True).encode() + os.urandom(8)).hexdigest()
        repo = self._repo_dir(repo_type, repo_id)
        (repo / "commits").mkdir(parents=True, exist_ok=True)
        (repo / "commits" / f"{sha}.json").write_text(json.dumps(record))
        refs = json.loads((repo / "refs.json").read_text()) if (repo / "refs.json").is_file() else {}
        refs[branch] = sha
        (repo / "refs.json").write_text(json.dumps(refs))
        return sha

    def _store_blob(self, data: bytes) -> str:
        oid = git_blob_sha1(data)
        if not self._blob(oid).is_file():
            tmp = self._blob(oid).with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(self._blob(oid))
        return oid

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> bool:
        """Create the repo with an initial commit holding ``.gitattributes`` (like the Hub). False if it exists."""
        with self._lock:
            repo = self._repo_dir(repo_type, repo_id)
            if (repo / "refs.json").is_file():
                return False
            repo.mkdir(parents=True, exist_ok=True)
            (repo / "meta.json").write_text(json.dumps({"private": private, "createdAt": _now()}))
            self._write_commit(repo_type, repo_id, "main", None, {".gitattributes": self._store_blob(_GITATTRIBUTES)}, "initial commit")
            return True

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}"


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every answer sets Content-Length
    timeout = 60  # idle keep-alive connections end eventually

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    # ---------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json",
              length: int | None = None) -> None:
        """Send a response; for HEAD, ``length`` is the size GET would return (the client reads it as file size)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _body(self) -> bytes:
        return self._request_body

    def _require_auth(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or (self.hub.token is not None and auth[7:] != self.hub.token):
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.hub.requests.append((self.command, url.path))
        # Always consume the body first: on a keep-alive connection an unread body would be parsed as the next request.
        self._request_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            # Route on the raw path: the client quotes revisions with safe="" ("refs/pr/1" -> "refs%2Fpr%2F1").
            self._route(url.path, parse_qs(url.query))
        except Exception as e:  # a LocalHub bug: answer 400 (not retried by the client) with the reason
            if not isinstance(e, HubError):
                e = HubError(400, None, f"LocalHub failed: {type(e).__name__}: {e}")
            # header values must be latin-1: escape e.g. Chinese file names
            headers = {"X-Error-Message": e.message.encode("ascii", "backslashreplace").decode()}
            if e.code:
                headers["X-Error-Code"] = e.code
            if e.commit:  # lets hf_hub_download cache the file's absence (.no_exist/<commit>)
                headers["X-Repo-Commit"] = e.commit
            self._json({"error": e.message}, e.status, headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # ---------------------------------------------------------------- routing
    def _route(self, path: str, query: dict) -> None:
        hub = self.hub
        if self.command == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if self.command == "POST" and path == "/api/validate-yaml":
            return self._json({"errors": [], "warnings": []})  # create_commit validates README.md front matter
        if self.command == "GET" and path == "/api/whoami-v2":
            self._require_auth()
            return self._json({"type": "user", "name": hub.username, "fullname": hub.username, "orgs": [],
                               "auth": {"accessToken": {"role": "write", "displayName": "local"}}})
        if m := _RESOLVE_ROUTE.match(path):
            repo_type = (m[1] or "models")[:-1]
            return self._resolve_file(repo_type, unquote(m[2]), unquote(m[3]), unquote(m[4]))
        if m := _API_ROUTE.match(path):
            repo_type, repo_id, action = m[1][:-1], unquote(m[2]), m[3]
            revision, _, sub = (m[4] or "main").partition("/")  # only /tree/ has a path after the revision
            revision, sub = unquote(revision), unquote(sub)
            if self.command == "GET" and action in (None, "revision"):
                return self._repo_info(repo_type, repo_id, revision)
            if self.command == "GET" and action == "tree":
                return self._tree(repo_type, repo_id, revision, sub, query.get("recursive", [""])[0] in ("True", "true", "1"))
            if self.command == "POST" and action == "preupload":
                return self._preupload(repo_type, repo_id, revision)
            if self.command == "POST" and action == "commit":
                return self._commit(repo_type, repo_id, revision, query)
        # Anything else (xet token routes, LFS batch, telemetry, ...) is deliberately unsupported.
        raise HubError(404, None, f"Not served by LocalHub: {self.command} {path}")

    # ---------------------------------------------------------------- endpoints
    def _create_repo(self) -> None:
        self._require_auth()
        payload = json.loads(self._body() or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.hub.username}/{payload['name']}"
        created = self.hub.create_repo(repo_type, repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        url = self.hub.repo_url(repo_type, repo_id)
        if not created:
            # create_repo(exist_ok=True) swallows the 409 but then still reads "url" from the body.
            return self._json({"error": "You already created this model repo", "url": url}, 409)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        hub = self.hub
        sha, commit = hub._resolve(repo_type, repo_id, revision)
        meta = json.loads((hub._repo_dir(repo_type, repo_id) / "meta.json").read_text())
        siblings = [{"rfilename": p, "size": hub._blob(oid).stat().st_size, "blobId": oid} for p, oid in sorted(commit["files"].items())]
        self._json({
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": sha, "lastModified": commit["date"], "createdAt": meta["createdAt"],
            "private": meta["private"], "disabled": False, "gated": False, "downloads": 0, "likes": 0,
            "tags": [], "siblings": siblings,
        })

    def _tree(self, repo_type: str, repo_id: str, revision: str, sub: str, recursive: bool) -> None:
        hub = self.hub
        _, commit = hub._resolve(repo_type, repo_id, revision)
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        entries: dict[str, dict] = {}
        for path, oid in sorted(commit["files"].items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            # directories between prefix and the file (only the first level unless recursive)
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, {"type": "directory", "path": folder, "size": 0,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "oid": oid, "size": hub._blob(oid).stat().st_size}
        if prefix and not entries:
            raise HubError(404, "EntryNotFound", f"{sub} does not exist on {revision}")
        self._json(list(entries.values()))  # a single page: no "Link: rel=next" header

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_auth()
        files = json.loads(self._body())["files"]
        _, commit = self.hub._resolve(repo_type, repo_id, revision)
        # "regular" for everything => contents are sent base64-inline in the commit (no LFS / Xet upload).
        # "oid" = current git blob sha1, so the client can drop unchanged files from the commit.
        self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                               "oid": commit["files"].get(f["path"])} for f in files]})

    def _commit(self, repo_type: str, repo_id: str, revision: str, query: dict) -> None:
        self._require_auth()
        if query.get("create_pr"):
            raise HubError(400, None, "LocalHub does not support pull requests")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        hub = self.hub
        with hub._lock:
            branch = revision
            parent, commit = hub._resolve(repo_type, repo_id, branch)
            if parent == branch:
                raise HubError(400, None, "Can only commit to a branch")
            files = dict(commit["files"])
            summary = "commit"
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "header":
                    summary = value.get("summary") or summary
                elif key == "file":
                    files[value["path"]] = hub._store_blob(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {value['path']}")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: o for p, o in files.items() if not p.startswith(folder)}
                else:  # lfsFile never happens: preupload never answers "lfs"
                    raise HubError(400, None, f"Unsupported commit operation: {key}")
            sha = hub._write_commit(repo_type, repo_id, branch, parent, files, summary)
        self._json({"success": True, "commitOid": sha, "commitMessage": summary, "pullRequestUrl": None,
                    "commitUrl": f"{hub.repo_url(repo_type, repo_id)}/commit/{sha}"})

    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, filename: str) -> None:
        hub = self.hub
        sha, commit = hub._resolve(repo_type, repo_id, revision)
        oid = commit["files"].get(filename)
        if oid is None:
            raise HubError(404, "EntryNotFound", f"{filename} does not exist on {revision}", commit=sha)
        # hf_hub_download needs X-Repo-Commit + ETag (+ Content-Length for the size check). No X-Xet-Hash / Link
        # header => plain HTTP GET; no redirect => the download URL is this same URL.
        headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "Accept-Ranges": "none"}  # no Range support
        size = hub._blob(oid).stat().st_size
        data = b"" if self.command == "HEAD" else hub._blob(oid).read_bytes()
        self._send(200, data, headers, content_type="application/octet-stream", length=size)

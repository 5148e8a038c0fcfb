"""pytest fixture ``local_hub``: a running :class:`tests.hubserver.LocalHub` that this process talks to.

Setting ``HF_ENDPOINT`` is not enough once ``huggingface_hub`` is imported (timm and our package import it):
``huggingface_hub.constants`` reads the environment once, at import time, and some values are copied further.
``point_huggingface_hub_to`` patches, with ``monkeypatch`` so everything is restored after the test:

* ``constants.ENDPOINT`` - read at call time by ``HfApi()``, ``hf_hub_download``, ``snapshot_download``, ...
* ``constants.HUGGINGFACE_CO_URL_TEMPLATE`` - the ``/resolve/`` url template, built from ENDPOINT at import;
  ``hf_hub_url`` (hence every download) formats it, so without this downloads still go to huggingface.co.
* ``endpoint`` of every ``HfApi`` instance already living in a module - above all ``huggingface_hub.hf_api.api``,
  which backs the module-level functions (``huggingface_hub.create_repo``, ``model_info``, ``upload_file``,
  ``list_repo_files``, ``file_exists``, ... and ``timm.models._hub.model_info``): it froze ENDPOINT at import.
* ``from huggingface_hub.constants import ENDPOINT``-style copies in any loaded module (``huggingface_hub.cli.auth``,
  ``utils._git_credential``, ``utils._cache_assets``, ``gradio.tunneling``): same name and old value => patched.
* ``constants.HF_URL_HOSTS`` and ``utils._http._HUB_ORIGINS`` (hosts trusted for redirects / URL parsing).
* cache/token paths (``HF_HOME``, ``HF_HUB_CACHE``, ``HF_XET_CACHE``, ``HF_TOKEN_PATH``, ...), ``HF_HUB_OFFLINE``
  and ``HF_HUB_DISABLE_TELEMETRY`` (else building the user agent fetches ``/api/agent-harnesses``), all
  also copied into constants at import.
* fsspec's instance cache of ``HfFileSystem`` (instances keep their endpoint), and the shared httpx client
  (``close_session``) so it is rebuilt with ``NO_PROXY`` covering 127.0.0.1 and drops keep-alive sockets.

The same variables are also set in ``os.environ`` so subprocesses started by the test use the hub too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.hubserver import LocalHub

TEST_TOKEN = "hf_local_test_token"


def point_huggingface_hub_to(url: str, hf_home: str | os.PathLike, monkeypatch, token: str = TEST_TOKEN) -> None:
    """Make this (already running) process and its future subprocesses use the hub at ``url``."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    hf_home = Path(hf_home)
    url = url.rstrip("/")
    old_endpoint = constants.ENDPOINT

    # 1. Environment: read by new processes, and at call time by a few places (HF_TOKEN, HF_HUB_OFFLINE for hf_xet).
    env = {
        "HF_ENDPOINT": url,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": token,
        "NO_PROXY": ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("NO_PROXY")])),
        "no_proxy": ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("no_proxy")])),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "HF_OIDC_RESOURCE",
                "HUGGINGFACE_CO_STAGING"):
        monkeypatch.delenv(key, raising=False)

    # 2. Values huggingface_hub.constants computed from the environment at import time.
    host = urlsplit(url).hostname
    new_constants = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {host}),
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HUGGINGFACE_HUB_CACHE": str(hf_home / "hub"),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HUGGINGFACE_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(hf_home / ".check_for_update_done"),
        "CHECK_FOR_SKILL_UPDATE_DONE_PATH": str(hf_home / ".check_for_skill_update_done"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
    }
    old_constants = {name: getattr(constants, name, None) for name in new_constants}
    for name, value in new_constants.items():
        monkeypatch.setattr(constants, name, value, raising=False)
    if hasattr(_http, "_HUB_ORIGINS"):
        origin = (urlsplit(url).scheme, host, urlsplit(url).port or 80)
        monkeypatch.setattr(_http, "_HUB_ORIGINS", frozenset(_http._HUB_ORIGINS | {origin}))

    # 3. Copies made at import time by other modules: HfApi instances (huggingface_hub.hf_api.api behind the
    #    module-level functions, gradio's, possibly ours) and `from huggingface_hub.constants import ENDPOINT`-style
    #    copies (huggingface_hub.cli.auth, utils._git_credential, utils._cache_assets, gradio.tunneling, ...).
    path_like = {name for name, value in old_constants.items() if isinstance(value, str)}
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict) or module is constants:
            continue
        for attr, value in list(namespace.items()):
            # type() rather than isinstance(): isinstance may read __class__ on lazy/deprecated proxies (warnings)
            if issubclass(type(value), huggingface_hub.HfApi) and value.endpoint in (old_endpoint, url):
                monkeypatch.setattr(value, "endpoint", url)
            elif attr in path_like and type(value) is str and value == old_constants[attr]:
                monkeypatch.setattr(module, attr, new_constants[attr])

    # 4. Cached objects holding the old endpoint / old network settings.
    if "huggingface_hub.hf_file_system" in sys.modules:
        sys.modules["huggingface_hub.hf_file_system"].HfFileSystem.clear_instance_cache()
    _http.close_session()


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """A running LocalHub (repos under tmp_path/hub_server) that huggingface_hub and timm use in this test.

    HF caches go to tmp_path/hf_home (fresh per test), HF_TOKEN is a dummy token accepted by the server.
    Everything is undone after the test (monkeypatch), and the HTTP client is reset again.
    """
    from huggingface_hub.utils import _http

    with LocalHub(tmp_path / "hub_server", token=TEST_TOKEN) as hub:
        point_huggingface_hub_to(hub.url, tmp_path / "hf_home", monkeypatch, token=TEST_TOKEN)
        try:
            yield hub
        finally:
            _http.close_session()  # drop keep-alive sockets to this server before it stops
    # monkeypatch undoes its patches after this fixture's teardown; clear fsspec's cache of hub-bound instances
    if "huggingface_hub.hf_file_system" in sys.modules:
        sys.modules["huggingface_hub.hf_file_system"].HfFileSystem.clear_instance_cache()


_LOOPBACK = {"127.0.0.1", "::1", "localhost", "", None}


@pytest.fixture
def no_internet(monkeypatch):
    """Fail any Python-level socket connection / DNS lookup to a non-loopback host during the test.

    (Native code such as hf_xet's Rust client is out of reach; LocalHub never offers Xet, so it is not used.)
    """
    import socket

    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(address):
        if isinstance(address, tuple) and address[0] not in _LOOPBACK:
            raise ConnectionRefusedError(f"no_internet: blocked connection to {address!r}")

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        check((host.decode() if isinstance(host, bytes) else host,))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield

"""Tests of the local Hub test server (tests/hubserver.py) with throwaway models (no chnmnist_hub code)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

import huggingface_hub
from huggingface_hub import HfApi, PyTorchModelHubMixin, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hub_fixture import local_hub, no_internet  # noqa: F401  (pytest fixtures)
from tests.hubserver import LocalHub

timm = pytest.importorskip("timm")


class TinyNet(nn.Module, PyTorchModelHubMixin):
    def __init__(self, hidden: int = 8, n_out: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.body(x)


def _resnet():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=15).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a loading mistake would show in the outputs
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_endpoint_is_patched_everywhere(local_hub):
    assert constants.ENDPOINT == local_hub.url
    assert huggingface_hub.hf_hub_url("a/b", "c.json").startswith(local_hub.url + "/a/b/resolve/main/")
    assert huggingface_hub.hf_api.api.endpoint == local_hub.url  # behind huggingface_hub.model_info & co
    assert HfApi().endpoint == local_hub.url
    assert constants.HF_HUB_CACHE.startswith(str(local_hub.root.parent))


def test_mixin_push_and_from_pretrained(local_hub, tmp_path):
    torch.manual_seed(0)
    model = TinyNet(hidden=16).eval()
    commit = model.push_to_hub("alice/tiny")
    assert commit.oid and commit.commit_url.startswith(local_hub.url + "/alice/tiny/commit/")

    files = huggingface_hub.list_repo_files("alice/tiny")
    assert {"config.json", "model.safetensors", "README.md", ".gitattributes"} <= set(files)

    loaded = TinyNet.from_pretrained("alice/tiny", cache_dir=tmp_path / "fresh_cache").eval()
    assert loaded.body[0].out_features == 16  # init kwargs came back through config.json
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert "/alice/tiny/resolve/main/model.safetensors" in local_hub.paths("GET")


@pytest.mark.parametrize("how", ["save_for_hf+upload_folder", "push_to_hf_hub"])
def test_timm_resnet_roundtrip(local_hub, tmp_path, how):
    from timm.models import push_to_hf_hub, save_for_hf

    model = _resnet()
    repo_id = "alice/resnet"
    if how == "push_to_hf_hub":
        push_to_hf_hub(model, repo_id, safe_serialization=True)
    else:
        save_for_hf(model, tmp_path / "export", safe_serialization=True)
        HfApi().create_repo(repo_id, exist_ok=True)
        HfApi().upload_folder(repo_id=repo_id, folder_path=tmp_path / "export")

    assert {"config.json", "model.safetensors"} <= set(huggingface_hub.list_repo_files(repo_id))
    config = json.loads(open(hf_hub_download(repo_id, "config.json")).read())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 15

    reloaded = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        out = reloaded(x)
        assert out.shape == (2, 15)
        assert torch.equal(model(x), out)


def test_api_roundtrip_revisions_and_snapshot(local_hub, tmp_path):
    api = HfApi()
    url = api.create_repo("alice/files")
    assert url.repo_id == "alice/files" and str(url) == local_hub.url + "/alice/files"
    assert api.create_repo("alice/files", exist_ok=True).repo_id == "alice/files"
    with pytest.raises(HfHubHTTPError):
        api.create_repo("alice/files")  # 409 without exist_ok
    assert api.create_repo("solo").repo_id == "testuser/solo"  # no namespace -> the token's user

    # upload_file / create_commit take the non-pipelined path (preupload + NDJSON commit)
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id="alice/files")
    api.create_commit(
        "alice/files",
        operations=[
            huggingface_hub.CommitOperationAdd("a.txt", b"two"),
            huggingface_hub.CommitOperationAdd("sub/dir/b.bin", bytes(range(256)) * 100),
        ],
        commit_message="second",
    )
    info = huggingface_hub.model_info("alice/files")
    assert info.sha != first.oid and re.fullmatch(r"[0-9a-f]{40}", info.sha)
    assert {s.rfilename for s in info.siblings} == {".gitattributes", "a.txt", "sub/dir/b.bin"}
    assert sorted(api.list_repo_files("alice/files")) == [".gitattributes", "a.txt", "sub/dir/b.bin"]
    assert [e.path for e in api.list_repo_tree("alice/files")] == [".gitattributes", "a.txt", "sub"]
    assert api.file_exists("alice/files", "sub/dir/b.bin") and not api.file_exists("alice/files", "zzz")
    assert not api.file_exists("nobody/nothing", "a.txt")

    # old commits stay downloadable; branch resolves to the latest
    assert open(hf_hub_download("alice/files", "a.txt", revision=first.oid)).read() == "one"
    assert open(hf_hub_download("alice/files", "a.txt")).read() == "two"
    folder = snapshot_download("alice/files", cache_dir=tmp_path / "snap")
    assert (tmp_path / "snap").exists() and open(f"{folder}/sub/dir/b.bin", "rb").read() == bytes(range(256)) * 100
    local = snapshot_download("alice/files", local_dir=tmp_path / "local")
    assert open(f"{local}/a.txt").read() == "two"

    # non-ASCII paths (quoted in urls, escaped in error headers)
    api.upload_file(path_or_fileobj="三".encode(), path_in_repo="标签/三.txt", repo_id="alice/files")
    assert open(hf_hub_download("alice/files", "标签/三.txt"), encoding="utf-8").read() == "三"
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("alice/files", "标签/四.txt")
    info = huggingface_hub.model_info("alice/files")

    # unchanged content -> no new commit (preupload returns the remote git oid)
    again = api.upload_file(path_or_fileobj=b"two", path_in_repo="a.txt", repo_id="alice/files")
    assert again.oid == info.sha


def test_missing_repo_file_and_revision_errors(local_hub):
    HfApi().create_repo("alice/exists")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/missing", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.model_info("nobody/missing")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("nobody/missing")
    with pytest.raises(RemoteEntryNotFoundError) as err:
        hf_hub_download("alice/exists", "config.json")
    assert isinstance(err.value, EntryNotFoundError)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/exists", ".gitattributes", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        timm.create_model("hf-hub:nobody/missing", pretrained=True)


def test_writes_need_a_token(local_hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HfHubHTTPError) as err:
        HfApi().create_repo("alice/anon")
    assert err.value.response.status_code == 401


def test_everything_goes_to_the_local_server(local_hub, no_internet, tmp_path):
    """With non-loopback sockets blocked, a full push/pull cycle works and the server saw every step."""
    import socket

    with pytest.raises(OSError):  # the guard is active
        socket.create_connection(("huggingface.co", 443), timeout=1)
    model = TinyNet().eval()
    model.push_to_hub("alice/offline-proof")
    TinyNet.from_pretrained("alice/offline-proof")
    snapshot_download("alice/offline-proof", cache_dir=tmp_path / "snap")
    timm_model = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=15, drop_rate=0.0)
    from timm.models import push_to_hf_hub

    push_to_hf_hub(timm_model, "alice/offline-resnet", safe_serialization=True)
    timm.create_model("hf-hub:alice/offline-resnet", pretrained=True)

    seen = local_hub.requests
    served = re.compile(
        r"^(/api/repos/create|/api/validate-yaml"
        r"|/api/models/[^/]+/[^/]+(/revision/[^/]+|/tree/.+|/preupload/[^/]+|/commit/[^/]+)?"
        r"|/[^/]+/[^/]+/resolve/[^/]+/.+)$"
    )
    assert seen and all(served.match(path) for _, path in seen), seen
    assert not any("xet" in path or "lfs" in path or "telemetry" in path for _, path in seen)
    assert ("POST", "/api/models/alice/offline-proof/commit/main") in seen
    assert ("GET", "/alice/offline-resnet/resolve/main/model.safetensors") in seen


def test_subprocess_uses_hub_through_environ(local_hub, tmp_path):
    """LocalHub.environ() is enough for a fresh process (it reads HF_ENDPOINT at import)."""
    HfApi().upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=HfApi().create_repo("alice/sub").repo_id)
    env = {**os.environ, **local_hub.environ(tmp_path / "child_home")}
    code = "from huggingface_hub import hf_hub_download; print(open(hf_hub_download('alice/sub', 'a.txt')).read())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello"
    assert (tmp_path / "child_home" / "hub" / "models--alice--sub").is_dir()


def test_standalone_start_stop(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest makes the suite offline by default
    with LocalHub(tmp_path / "s") as hub:
        api = HfApi(endpoint=hub.url, token="x")
        api.create_repo("bob/r")
        assert api.model_info("bob/r").sha
    assert hub._server is None  # stop() returned although the shared HTTP client kept its connection open


def test_patches_are_undone_after_the_fixture():
    default = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    assert constants.ENDPOINT == default
    assert huggingface_hub.hf_api.api.endpoint == default
    assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith(default + "/")

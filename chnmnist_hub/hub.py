"""The hub-style model: one class that saves, loads, pushes and predicts.

A model folder is exactly what a hub repo holds: ``config.json`` (timm's keys plus ours under
``"chnmnist"``), ``model.safetensors`` and a ``README.md`` model card. Weights are read only from
safetensors; pickle files in a folder or repo are never opened.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import ModelHubMixin
from torch import nn

from . import preprocess
from .errors import ChnmnistError, ImageError, ModelError
from .labels import LABELS, NUM_CLASSES
from .models import ARCHITECTURES, build_network, model_args_for

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
__version__ = "0.1.0"


def make_config(architecture: str, model_args: dict | None = None, training: dict | None = None,
                weights_dtype: str = "float32") -> dict:
    """config.json for a new model. timm reads the top-level keys; we read ``chnmnist``."""
    args = model_args_for(architecture, **(model_args or {}))
    return {
        "architecture": "resnet18" if architecture == "resnet18" else "chnmnist_cnn",
        "num_classes": NUM_CLASSES,
        "model_args": {"in_chans": 1},
        "label_names": [label.character for label in LABELS],
        "pretrained_cfg": {
            "input_size": [1, args.get("input_size", preprocess.SIZE), args.get("input_size", preprocess.SIZE)],
            "fixed_input_size": False,
            "interpolation": "bilinear", "crop_pct": 1.0, "mean": [0.0], "std": [1.0],
            "num_classes": NUM_CLASSES, "first_conv": "conv1" if architecture == "resnet18" else "features.0",
            "classifier": "fc",
        },
        "chnmnist": {
            "model": architecture,
            "model_args": args,
            "labels": [{"index": l.index, "character": l.character, "value": l.value, "pinyin": l.pinyin} for l in LABELS],
            "preprocess": {"version": preprocess.VERSION, "size": preprocess.SIZE, "box": preprocess.BOX,
                           "stroke": preprocess.STROKE},
            "weights_dtype": weights_dtype,
            "training": training or {},
            "library_version": __version__,
        },
    }


def _check_config(config, where: str) -> dict:
    if not isinstance(config, dict) or not isinstance(config.get("chnmnist"), dict):
        raise ModelError(f"{where}: config.json is not a chnmnist_hub model config (no 'chnmnist' section)")
    ours = config["chnmnist"]
    if ours.get("model") not in ARCHITECTURES:
        raise ModelError(f"{where}: config.json names an unknown architecture {ours.get('model')!r}")
    labels = ours.get("labels")
    if not isinstance(labels, list) or [l.get("character") if isinstance(l, dict) else None for l in labels] != [l.character for l in LABELS]:
        raise ModelError(f"{where}: config.json's labels are not the 15 Chinese numerals in this library's order")
    pre = ours.get("preprocess")
    version = pre.get("version") if isinstance(pre, dict) else None
    if version != preprocess.VERSION:
        raise ModelError(f"{where}: the model was trained with preprocessing version {version!r}, "
                         f"this library has version {preprocess.VERSION}; update chnmnist_hub or retrain")
    if ours.get("weights_dtype", "float32") not in ("float32", "float16", "bfloat16"):
        raise ModelError(f"{where}: config.json has an unknown weights_dtype {ours.get('weights_dtype')!r}")
    tta = ours.get("tta") or {}
    angles = tta.get("angles", []) if isinstance(tta, dict) else None
    if not isinstance(angles, list) or len(angles) > 8 or not all(isinstance(a, (int, float)) and abs(a) <= 30 for a in angles):
        raise ModelError(f"{where}: config.json's tta must be {{\"angles\": [up to 8 rotations within 30 degrees]}}")
    try:
        model_args_for(ours["model"], **(ours.get("model_args") or {}))
    except (ModelError, TypeError, ValueError) as e:
        raise ModelError(f"{where}: config.json's model_args are invalid ({e})") from None
    return config


def _atomic_write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write every file to a temporary name first, then rename them all: a failure (full disk,
    kill) leaves the folder as it was, never with half a file or a config that does not match."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = []
    try:
        for name, data in files.items():
            tmp = folder / f".{name}.tmp-{os.getpid()}"
            staged.append((tmp, folder / name))
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        os.replace(tmp, final)


class ChnmnistModel(nn.Module, ModelHubMixin, library_name="chnmnist_hub", tags=["image-classification", "chinese-numerals"],
                    pipeline_tag="image-classification"):
    """A classifier of the 15 Chinese numerals; ``forward`` takes canonical (N, 1, 64, 64) input."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = _check_config(config, "model")
        ours = config["chnmnist"]
        self.architecture = ours["model"]
        self.net = build_network(self.architecture, ours.get("model_args"))
        self.input_size = int((ours.get("model_args") or {}).get("input_size", preprocess.SIZE))

    @classmethod
    def create(cls, architecture: str, model_args: dict | None = None, **config_kwargs) -> "ChnmnistModel":
        return cls(make_config(architecture, model_args, **config_kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.net(x)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ prediction

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, 15) for a canonical batch, averaged over the test-time views
        that config.json names (``chnmnist.tta.angles``: small rotations, one forward pass)."""
        was_training = self.training
        self.eval()
        x = x.to(self.device, torch.float32)
        angles = [float(a) for a in (self.config["chnmnist"].get("tta") or {}).get("angles", [])]
        views = [x] + [_rotate(x, a) for a in angles if a != 0]
        probs = F.softmax(self(torch.cat(views)).float(), dim=1).reshape(len(views), len(x), -1).mean(0)
        if was_training:
            self.train()
        return probs

    @torch.inference_mode()
    def predict_canonical(self, x: torch.Tensor, top_k: int = 5) -> list[list[dict]]:
        """Top-k for an already canonical batch (N, 1, 64, 64) in [0, 1]."""
        probs = self.probabilities(x).cpu()
        k = max(1, min(int(top_k), NUM_CLASSES))
        values, indices = probs.topk(k, dim=1)
        return [[{**LABELS[i].as_dict(), "probability": round(float(p), 6)} for p, i in zip(pv.tolist(), iv.tolist())]
                for pv, iv in zip(values, indices)]

    def predict(self, images, top_k: int = 5) -> list[list[dict]]:
        """Top-k predictions for a list of images (PIL, numpy, tensor or file path).

        Raises ImageError (NoCharacterError for a blank image) naming the image that failed.
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        batch = []
        for n, image in enumerate(images):
            try:
                batch.append(preprocess.canonicalize(image))
            except ImageError as e:
                raise type(e)(f"image {n + 1}: {e}" if len(images) > 1 else str(e)) from None
        if not batch:
            return []
        return self.predict_canonical(torch.stack(batch), top_k=top_k)

    # ------------------------------------------------------------ saving

    def weights_bytes(self) -> bytes:
        from safetensors.torch import save

        dtype = getattr(torch, self.config["chnmnist"].get("weights_dtype", "float32"))
        state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in self.net.state_dict().items()}
        return save(state, metadata={"format": "pt"})

    def save_pretrained(self, save_directory, *, config=None, repo_id=None, push_to_hub=False,
                        model_card_kwargs=None, extra_files: dict[str, bytes] | None = None, **push_kwargs):
        """Write config.json, model.safetensors and README.md (all or nothing)."""
        from .card import render_card

        folder = Path(save_directory)
        cfg = _check_config(config or self.config, str(folder))
        files = {CONFIG_NAME: (json.dumps(cfg, indent=2, ensure_ascii=False) + "\n").encode(),
                 WEIGHTS_NAME: self.weights_bytes()}
        if CARD_NAME not in (extra_files or {}) and not (folder / CARD_NAME).exists():
            files[CARD_NAME] = render_card(cfg, **(model_card_kwargs or {})).encode()
        files.update(extra_files or {})
        _atomic_write_files(folder, files)
        if push_to_hub:
            return self.push_to_hub(repo_id or folder.name, **push_kwargs)
        return None

    def _save_pretrained(self, save_directory: Path) -> None:  # the mixin's hook
        self.save_pretrained(save_directory)

    # ------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "ChnmnistModel":
        """The mixin's loader (it reads config.json itself), with its failures in one line, as load_model."""
        name = str(pretrained_model_name_or_path)
        try:
            if os.path.isfile(os.path.join(name, CONFIG_NAME)):  # a local folder: load_model's checks and words
                _check_config(_read_config(os.path.join(name, CONFIG_NAME), name), name)
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except ChnmnistError:
            raise
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{name}: config.json is not valid JSON ({e})") from None
        except Exception as e:  # e.g. a config.json that is JSON but not an object
            raise ModelError(f"could not load {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision=None, cache_dir=None, force_download=False,
                         local_files_only=False, token=None, config=None, map_location="cpu", **kwargs):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        weights = _fetch(model_id, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                         force_download=force_download, local_files_only=local_files_only, token=token)
        if config is None:
            config = _read_config(_fetch(model_id, CONFIG_NAME, revision=revision, cache_dir=cache_dir,
                                         force_download=force_download, local_files_only=local_files_only, token=token), model_id)
        model = cls(_check_config(config, model_id))
        try:
            state = load_file(weights, device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ModelError(f"{model_id}: {WEIGHTS_NAME} is damaged (truncated or not safetensors): {str(e).splitlines()[0]}") from None
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        expected = model.net.state_dict()
        missing, unexpected = set(expected) - set(state), set(state) - set(expected)
        if missing or unexpected:
            raise ModelError(f"{model_id}: the weights do not fit a {model.architecture} as config.json describes it "
                             f"({len(missing)} tensors missing, {len(unexpected)} unexpected)")
        bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
        if bad:
            raise ModelError(f"{model_id}: the weights do not fit a {model.architecture} as config.json describes it "
                             f"({bad[0]} has shape {tuple(state[bad[0]].shape)}, expected {tuple(expected[bad[0]].shape)})")
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise ModelError(f"{model_id}: the weights hold NaN or infinite values ({bad[0]})")
        model.net.load_state_dict(state)
        model.eval()
        return model.to(map_location)


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    a = torch.tensor(degrees * torch.pi / 180.0)
    theta = torch.tensor([[torch.cos(a), -torch.sin(a), 0.0], [torch.sin(a), torch.cos(a), 0.0]], device=x.device)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _read_config(path: str, where: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{where}: config.json is not valid JSON ({e})") from None


def _fetch(model_id: str, filename: str, **kw) -> str:
    """A file of a local folder or hub repo; a clear error if it is not there."""
    if os.path.isdir(model_id):
        path = os.path.join(model_id, filename)
        if os.path.isfile(path):
            return path
        pickles = sorted(f for f in os.listdir(model_id) if f.endswith(PICKLE_SUFFIXES))
        if filename == WEIGHTS_NAME and pickles:
            raise ModelError(f"{model_id} has only pickle weights ({pickles[0]}); they are never unpickled, "
                             f"convert them to {WEIGHTS_NAME}")
        raise ModelError(f"{model_id} has no {filename}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return hf_hub_download(repo_id=model_id, filename=filename, **kw)
    except RepositoryNotFoundError:
        raise ModelError(f"{model_id} is neither a model folder here nor a model repo on the hub") from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass of it
        raise ModelError(f"{model_id}: cannot reach the hub to download {filename}, and it is not in the local cache") from None
    except EntryNotFoundError:
        raise ModelError(f"hub repo {model_id} has no {filename}") from None
    except HfHubHTTPError as e:
        raise ModelError(f"{model_id}: the hub refused the download of {filename} ({str(e).splitlines()[0]})") from None
    except ValueError as e:  # an id that is not a valid repo name
        raise ModelError(f"{model_id} is neither a model folder here nor a valid hub repo id ({e})") from None


def create_model(architecture: str = "resnet18", **model_args) -> ChnmnistModel:
    """A new, untrained model: ``"cnn"`` (options: filters, pool, batchnorm) or ``"resnet18"``."""
    return ChnmnistModel.create(architecture, model_args or None)


def load_model(name_or_path, map_location: str | torch.device = "cpu", **kwargs) -> ChnmnistModel:
    """Load a model from a local folder or a hub repo id; errors are ModelError in plain words."""
    name = str(name_or_path)
    if not os.path.isdir(name):
        if os.path.exists(name):
            raise ModelError(f"{name} is a file; a model is a folder with config.json and {WEIGHTS_NAME}, or a hub repo id")
        if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", ""):
            raise ModelError(f"model folder {name} does not exist")
    try:
        config = _read_config(_fetch(name, CONFIG_NAME, **kwargs), name)
        return ChnmnistModel._from_pretrained(model_id=name, config=config, map_location=map_location, **kwargs)
    except ChnmnistError:
        raise
    except Exception as e:  # network and file-system failures, in one line
        raise ModelError(f"could not load {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None

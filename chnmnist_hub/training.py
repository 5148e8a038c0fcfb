"""Training on a CPU, one GPU or many (torchrun + DistributedDataParallel).

The whole training set lives on the device as one uint8 tensor of canonical images; batches are
sliced from it and augmented there, so no DataLoader workers are needed. Every source of
randomness is a generator seeded from (seed, epoch, step): a run resumed from a checkpoint, or
split over several processes, sees the same batches and the same augmentation.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import augment, preprocess
from .data import Dataset, load_dataset, make_split
from .errors import ChnmnistError
from .evaluate import trained_indices
from .hub import ChnmnistModel, _atomic_write_files, load_model, make_config
from .labels import NUM_CLASSES
from .models import model_args_for

CHECKPOINT_NAME = "checkpoint.safetensors"
HUB_FILES = ["config.json", "model.safetensors", "README.md", "metrics.json", "training_curves.png", "confusion_matrix.png"]


class TrainingError(ChnmnistError):
    pass


@dataclass
class TrainConfig:
    model: str = "resnet18"
    data: str = ""
    split: str = "writer"
    val_writers: str | None = None
    no_val: bool = False
    init: str | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    seed: int = 0
    device: str = "auto"
    out: str = "out"
    subset: int | None = None
    extra_train: str | None = None
    small_writing: float = 0.0
    resume: bool = False
    compile: bool = False
    amp: bool = True
    augment: bool | None = None
    recipe: str = "ours"
    filters: list[int] | None = None
    pool: bool | None = None
    batchnorm: bool | None = None
    input_size: int | None = None
    push_to_hub: str | None = None
    sketchset: str | None = None
    track_test: bool = False
    time_limit: float | None = None
    swa_epochs: int = 0
    swa_lr: float | None = None
    quiet: bool = False
    command: str = ""
    # filled in from the recipe
    optimizer: str = field(default="sgd")

    def resolve(self) -> "TrainConfig":
        """Fill unset hyper-parameters from the recipe."""
        if self.recipe == "seed":
            # The original report: CNN SGD lr 1e-5 momentum 0.9; ResNet Adam lr 1e-5; batch 64;
            # no augmentation; the CNN with 32/64 filters, pooling and no batch norm.
            defaults = {"epochs": 20, "lr": 1e-5, "batch_size": 64, "weight_decay": 0.0, "label_smoothing": 0.0,
                        "augment": False, "optimizer": "sgd" if self.model == "cnn" else "adam"}
            if self.model == "cnn":
                defaults.update(filters=[32, 64], pool=True, batchnorm=False)
        elif self.recipe == "ours":
            defaults = {"epochs": 30 if self.model == "cnn" else 24, "lr": 0.1, "batch_size": 256,
                        "weight_decay": 5e-4, "label_smoothing": 0.1, "augment": True, "optimizer": "sgd-nesterov"}
        else:
            raise TrainingError(f"unknown recipe {self.recipe!r}; choose 'ours' or 'seed'")
        for k, v in defaults.items():
            if getattr(self, k) is None or k == "optimizer":
                setattr(self, k, v)
        if self.epochs < 0 or self.batch_size < 1 or not (self.lr > 0) or not math.isfinite(self.lr):
            raise TrainingError("--epochs must be 0 or more, --batch-size at least 1 and --lr a positive number")
        if self.swa_lr is None:
            self.swa_lr = self.lr / 5
        if self.swa_epochs < 0 or not (self.swa_lr > 0) or not math.isfinite(self.swa_lr):
            raise TrainingError("--swa-epochs must be 0 or more and --swa-lr a positive number")
        if not 0 <= self.small_writing <= 1:
            raise TrainingError("--small-writing is a share of the training images, from 0 to 1")
        if self.epochs == 0 and not (self.init and self.swa_epochs):
            raise TrainingError("--epochs 0 only continues trained weights: give --init and --swa-epochs")
        return self

    def model_args(self) -> dict:
        if self.model != "cnn":
            return {"input_size": self.input_size} if self.input_size else {}
        return {k: v for k, v in (("filters", self.filters), ("pool", self.pool), ("batchnorm", self.batchnorm)) if v is not None}


# ---------------------------------------------------------------- distributed set-up

@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup_distributed(device_choice: str) -> tuple[Dist, torch.device]:
    cuda = torch.cuda.is_available() and device_choice in ("auto", "cuda")
    if device_choice == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA GPU is visible")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        d = Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))
        if cuda:
            torch.cuda.set_device(d.local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        device = torch.device("cuda", d.local_rank) if cuda else torch.device("cpu")
        return d, device
    return Dist(), torch.device("cuda") if cuda else torch.device("cpu")


def _barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


# ---------------------------------------------------------------- checkpoints (safetensors only)

def _save_checkpoint(path: Path, model, optimizer, meta: dict, swa: dict | None = None) -> None:
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"swa.{k}": v.detach().cpu().contiguous() for k, v in (swa or {}).items()})
    opt = optimizer.state_dict()
    for pid, st in opt["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim.{pid}.{k}"] = t.detach().cpu().contiguous()
    meta = {**meta, "param_groups": opt["param_groups"]}
    data = save(tensors, metadata={"meta": json.dumps(meta)})
    _atomic_write_files(path.parent, {path.name: data})


def _load_checkpoint(path: Path, model, optimizer) -> tuple[dict, dict]:
    """Restores model and optimizer; returns the run's meta and the weight average so far (may be empty)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()["meta"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise TrainingError(f"checkpoint {path} cannot be read ({type(e).__name__}); delete it to start afresh") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    swa = {k[4:]: v for k, v in tensors.items() if k.startswith("swa.")}
    return meta, swa


# ---------------------------------------------------------------- the loop

def _lr_at(step: int, total: int, base: float, recipe: str) -> float:
    if recipe == "seed":
        return base
    # A fifteenth of the run; short runs get up to 20 steps (a 90-step CNN run with 5 warm-up
    # steps diverged at lr 0.1). Runs of 300 steps or more are not affected.
    warm = max(1, total // 15)
    if warm < 20:
        warm = max(warm, min(20, total // 3))
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _make_optimizer(cfg: TrainConfig, params):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    nesterov = cfg.optimizer == "sgd-nesterov"
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=nesterov, weight_decay=cfg.weight_decay)


def _generator(device, *parts: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(hashlib.sha1(repr(parts).encode()).hexdigest()[:15], 16))
    return g


@torch.no_grad()
def evaluate_tensor(model, images_u8: torch.Tensor, labels: torch.Tensor, batch: int = 1024, amp: bool = False):
    """(accuracy, mean loss, predictions) over canonical uint8 images already on the device."""
    model.eval()
    preds, loss_sum = [], 0.0
    ctx = torch.autocast("cuda", torch.bfloat16) if amp and images_u8.is_cuda else contextlib.nullcontext()
    for i in range(0, len(images_u8), batch):
        x = images_u8[i : i + batch, None].float().div_(255)
        if images_u8.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with ctx:
            logits = model(x).float()
        loss_sum += float(F.cross_entropy(logits, labels[i : i + batch], reduction="sum"))
        preds.append(logits.argmax(1))
    p = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=labels.device)
    n = max(1, len(labels))
    return float((p == labels).float().sum()) / n, loss_sum / n, p


def train(cfg: TrainConfig) -> dict:
    cfg.resolve()
    d, device = setup_distributed(cfg.device)
    try:
        return _train(cfg, d, device)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _log(d: Dist, cfg: TrainConfig, msg: str) -> None:
    if d.master and not cfg.quiet:
        print(msg, flush=True)


def _train(cfg: TrainConfig, d: Dist, device: torch.device) -> dict:
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    ds = load_dataset(cfg.data)
    split = make_split(ds, cfg.split, seed=cfg.seed, val_writers=cfg.val_writers)
    train_idx = split.train
    if cfg.no_val:  # a final fit: once the recipe is chosen, the validation images train too
        train_idx = np.sort(np.concatenate([split.train, split.val]))
        split = replace(split, train=train_idx, val=split.val[:0])
    if cfg.subset:
        rng = np.random.default_rng(cfg.seed)
        train_idx = np.sort(rng.choice(train_idx, size=min(cfg.subset, len(train_idx)), replace=False))
    # Every image takes the same canonical path as at inference; cached across runs.
    canon = preprocess.canonicalize_dataset(ds.images)
    to_dev = lambda idx: (torch.from_numpy(canon[idx]).to(device), torch.from_numpy(ds.labels[idx]).to(device))
    # The run's own images first, then any extra ones; moved to the device in one piece.
    images, labels = [canon[train_idx]], [ds.labels[train_idx]]
    n_extra = n_small = 0
    if cfg.extra_train:
        ex_images, ex_labels = _load_extra(cfg.extra_train)
        n_extra = len(ex_labels)
        images.append(preprocess.canonicalize_dataset(ex_images))
        labels.append(ex_labels)
    if cfg.small_writing:
        small = _small_writing(ds, train_idx, cfg.small_writing, cfg.seed)
        n_small = len(small)
        images.append(small.images)
        labels.append(small.labels)
    xtr = torch.from_numpy(np.concatenate(images)).to(device)
    ytr = torch.from_numpy(np.concatenate(labels)).to(device)
    xval, yval = to_dev(split.val)
    xte, yte = to_dev(split.test)

    training_info = {**split.describe(ds), "data_fingerprint": ds.fingerprint(), "n_train": int(len(train_idx)), "epochs": cfg.epochs, "recipe": cfg.recipe,
                     "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed, "augment": cfg.augment,
                     "optimizer": cfg.optimizer, "weight_decay": cfg.weight_decay,
                     "label_smoothing": cfg.label_smoothing, "subset": cfg.subset, "command": cfg.command,
                     "extra_train": Path(cfg.extra_train).name if cfg.extra_train else None, "n_extra_train": n_extra}
    if cfg.small_writing:
        training_info.update(small_writing=cfg.small_writing, n_small_writing=n_small)
    if cfg.swa_epochs:
        training_info.update(swa_epochs=cfg.swa_epochs, swa_lr=cfg.swa_lr)
    init = _init_weights(cfg, ds, split) if cfg.init else None
    if init is not None:
        theirs = init.config["chnmnist"].get("training") or {}
        training_info["init"] = {"from": Path(cfg.init).name, **{k: theirs.get(k) for k in ("command", "epochs", "swa_epochs")}}
    config = make_config(cfg.model, cfg.model_args(), training=training_info,
                         weights_dtype="float16" if cfg.model == "resnet18" else "float32")
    model = ChnmnistModel(config)
    if init is not None:
        model.load_state_dict(init.state_dict())
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(cfg, model.parameters())

    ckpt = out / CHECKPOINT_NAME
    start_epoch, history, train_seconds, seen, first_loss = 0, [], 0.0, 0, None
    # Weight averaging (SWA): after the cosine schedule, a few epochs at a constant rate, the
    # weights averaged over their ends; a flatter optimum that generalises to unseen writers.
    swa, swa_n = {}, 0
    if cfg.resume and ckpt.exists():
        meta, swa = _load_checkpoint(ckpt, model, optimizer)
        mine = {k: v for k, v in asdict(cfg).items() if k in ("model", "split", "val_writers", "no_val", "init", "seed", "batch_size", "recipe", "subset", "epochs", "small_writing")}
        theirs = {k: meta["cfg"].get(k) for k in mine}
        if mine != theirs:
            diff = ", ".join(f"{k}: {theirs[k]} -> {mine[k]}" for k in mine if mine[k] != theirs[k])
            raise TrainingError(f"--resume: the checkpoint in {out} was made with other settings ({diff})")
        start_epoch, history = meta["epoch"] + 1, meta["history"]
        train_seconds, seen = meta["train_seconds"], meta["seen"]
        first_loss = meta.get("first_step_loss")  # the run's first step, not the resumed one's
        swa_n = history[-1].get("swa_models", 0) if swa and history else 0
        _log(d, cfg, f"resuming from epoch {start_epoch + 1} of {cfg.epochs + cfg.swa_epochs}")
    elif cfg.resume:
        _log(d, cfg, f"--resume: no checkpoint in {out}; starting from the beginning")

    net = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(net) if cfg.compile else net
    amp = cfg.amp and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", torch.bfloat16)) if amp else contextlib.nullcontext

    n = len(xtr)
    bsz = cfg.batch_size
    steps_per_epoch = max(1, n // bsz) if n >= bsz else 1
    total_steps = steps_per_epoch * cfg.epochs
    if n < d.world:
        raise TrainingError(f"{n} training images cannot be shared among {d.world} processes")

    from tqdm import tqdm

    for epoch in range(start_epoch, cfg.epochs + cfg.swa_epochs):
        net.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=_generator("cpu", cfg.seed, epoch, -1)).to(device)
        loss_acc = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        count = 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs + cfg.swa_epochs}", disable=not d.master or cfg.quiet,
                   leave=False, file=sys.stderr)
        for step in bar:
            gidx = perm[step * bsz : (step + 1) * bsz]
            g = _generator(device.type, cfg.seed, epoch, step)
            x = xtr[gidx, None].float().div_(255)
            y = ytr[gidx]
            if cfg.augment:
                params = augment.draw_params(len(gidx), g, device)
                params = {k: v[d.rank :: d.world] for k, v in params.items()}
                x = augment.apply(x[d.rank :: d.world], params)
            else:
                x = x[d.rank :: d.world]
            y = y[d.rank :: d.world]
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            if epoch < cfg.epochs:
                lr = _lr_at(epoch * steps_per_epoch + step, total_steps, cfg.lr, cfg.recipe)
            else:
                lr = cfg.swa_lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast():
                logits = fwd(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_acc += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            count += len(y)
            if first_loss is None:
                first_loss = _global_mean(loss.detach(), len(y), d)
            if step % 25 == 0 or step == steps_per_epoch - 1:
                if not torch.isfinite(loss_acc):
                    raise TrainingError(f"the loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}; "
                                        f"lower --lr (now {cfg.lr:g}) and start again")
                if d.master and not cfg.quiet:
                    bar.set_postfix(loss=f"{float(loss_acc) / count:.4f}", acc=f"{float(correct) / count:.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds
        seen += steps_per_epoch * min(bsz, n)
        totals = torch.stack([loss_acc.float(), correct.float(), torch.tensor(float(count), device=device)])
        if d.world > 1:
            dist.all_reduce(totals)
        row = {"epoch": epoch + 1, "train_loss": float(totals[0] / totals[2]), "train_accuracy": float(totals[1] / totals[2]),
               "lr": lr, "epoch_seconds": round(epoch_seconds, 4), "train_seconds": round(train_seconds, 4)}
        if d.master:
            if epoch >= cfg.epochs:  # only rank 0 saves and uses the average
                with torch.no_grad():
                    for k, p in model.named_parameters():
                        if k in swa:
                            swa[k] += (p.detach() - swa[k]) / (swa_n + 1)
                        else:
                            swa[k] = p.detach().clone()
                swa_n += 1
                row["swa_models"] = swa_n
            if len(yval):
                row["val_accuracy"], row["val_loss"], _ = evaluate_tensor(model, xval, yval, amp=amp)
            if cfg.track_test:
                row["test_accuracy"], _, _ = evaluate_tensor(model, xte, yte, amp=amp)
            history.append(row)
            _write_log(out, history)
            _save_checkpoint(ckpt, model, optimizer, {"epoch": epoch, "history": history, "train_seconds": train_seconds,
                                                      "seen": seen, "first_step_loss": first_loss, "cfg": asdict(cfg)}, swa)
            msg = f"epoch {epoch + 1}/{cfg.epochs + cfg.swa_epochs}  loss {row['train_loss']:.4f}  train {row['train_accuracy']:.4f}"
            msg += f"  val {row['val_accuracy']:.4f}" if len(yval) else ""
            _log(d, cfg, msg + (f"  test {row['test_accuracy']:.4f}" if cfg.track_test else "") + f"  ({epoch_seconds:.1f}s)")
        _barrier(d)
        if cfg.time_limit and train_seconds >= cfg.time_limit:
            _log(d, cfg, f"stopping: --time-limit {cfg.time_limit}s reached")
            break

    result = {}
    if d.master:
        if swa_n:
            _use_average(model, swa, xtr, bsz)
            msg = f"weights averaged over the last {swa_n} epochs"
            if len(yval):
                acc, loss, _ = evaluate_tensor(model, xval, yval, amp=amp)
                history[-1]["swa_val_accuracy"], history[-1]["swa_val_loss"] = acc, loss
                _write_log(out, history)
                msg += f": val {acc:.4f}"
            _log(d, cfg, msg)
        result = _finish(cfg, d, device, model, ds, canon, split, xte, yte, history, train_seconds, seen, amp, first_loss)
    _barrier(d)
    return result


def _write_log(out: Path, history: list[dict]) -> None:
    # The whole log rewritten atomically: a failed write leaves the previous one.
    _atomic_write_files(out, {"metrics.jsonl": "".join(json.dumps(r) + "\n" for r in history).encode()})


def _init_weights(cfg: TrainConfig, ds: Dataset, split) -> ChnmnistModel:
    """The model folder --init names, after checking it can be continued here without its
    training having seen this run's test images."""
    try:
        src = load_model(cfg.init)
    except ChnmnistError as e:
        raise TrainingError(f"--init {cfg.init}: {e}") from None
    ours, args = src.config["chnmnist"], model_args_for(cfg.model, **cfg.model_args())
    if ours["model"] != cfg.model or ours["model_args"] != args:
        raise TrainingError(f"--init {cfg.init} is a {ours['model']} with {ours['model_args']}; "
                            f"this run trains a {cfg.model} with {args}")
    # The rule `evaluate` scores by: weights whose training images cannot be told, or include
    # this run's test images, would make its test figure meaningless.
    trained = trained_indices(src, ds)
    if trained is None or len(np.intersect1d(trained, split.test)):
        t = ours.get("training") or {}
        raise TrainingError(f"--init {cfg.init} was not trained on this data's {cfg.split} split "
                            f"(it says split {t.get('split')}, seed {t.get('seed')}): its training may have seen this run's test images")
    return src


def _use_average(model, swa: dict, images_u8: torch.Tensor, batch: int) -> None:
    """Load the averaged weights, then measure batch-norm statistics afresh for them (the running
    ones belong to the last epoch's weights), on the training images as the model will see images:
    canonical, not augmented."""
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(swa[k].to(p.device, p.dtype))
    fmt = torch.channels_last if images_u8.is_cuda else torch.contiguous_format
    batches = (images_u8[i : i + batch, None].float().div_(255).contiguous(memory_format=fmt) for i in range(0, len(images_u8), batch))
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(batches, model)
    model.eval()


def _small_writing(ds: Dataset, train_idx: np.ndarray, fraction: float, seed: int) -> Dataset:
    """Canonical copies of a seeded share of this run's own training images, written at 45-75% of
    their size first. Writers of suites 1-90 whose glyphs are 12-15 px tall (22 px typical) are the
    ones a model misses, and a model never shown such writing misreads 6% of the validation
    characters shrunk to 70%. Drawn only from train_idx, so no validation or test image leaks in."""
    rng = np.random.default_rng([seed, 1])
    pick = np.sort(rng.choice(train_idx, size=max(1, round(fraction * len(train_idx))), replace=False))
    factors = rng.uniform(0.45, 0.75, len(pick))
    canon = preprocess.canonicalize_dataset(augment.written_smaller(ds.images[pick], factors))
    drawn = canon.reshape(len(canon), -1).any(1)  # a stroke shrunk below a pixel can vanish
    return Dataset(canon[drawn], ds.labels[pick][drawn], ds.writers[pick][drawn], ds.source)


def _load_extra(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic training images (tools/make_synth_train.py): an .npz of images and labels."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = np.asarray(z["images"]), np.asarray(z["labels"]).astype(np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise TrainingError(f"--extra-train {path}: not an .npz with 'images' and 'labels' ({e})") from None
    if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != (len(images),) or not ((labels >= 0) & (labels < NUM_CLASSES)).all():
        raise TrainingError(f"--extra-train {path}: needs uint8 images (N, H, W) and labels 0-14 (N,)")
    return images, labels


def _global_mean(loss: torch.Tensor, count: int, d: Dist) -> float:
    if d.world == 1:
        return float(loss)
    t = torch.stack([loss.float() * count, torch.tensor(float(count), device=loss.device)])
    dist.all_reduce(t)
    return float(t[0] / t[1])


def _finish(cfg, d, device, model, ds, canon, split, xte, yte, history, train_seconds, seen, amp, first_loss) -> dict:
    from .card import render_card
    from .plots import confusion_png, curves_png

    out = Path(cfg.out)
    acc, loss, pred = evaluate_tensor(model, xte, yte, amp=amp)
    y, p = yte.cpu().numpy(), pred.cpu().numpy()
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(cm, (y, p), 1)
    per_class = (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist()
    metrics = {
        "test_accuracy": acc, "test_loss": loss, "n_test": int(len(y)), "split": cfg.split,
        "per_class_accuracy": per_class, "confusion_matrix": cm.tolist(),
        "train_seconds": round(train_seconds, 3), "images_per_second": round(seen / max(train_seconds, 1e-9), 1),
        "epochs_run": len(history), "device": _device_name(device), "world_size": d.world,
        "first_step_loss": first_loss, "model": cfg.model, "recipe": cfg.recipe,
    }
    sketch = cfg.sketchset or _default_sketchset()
    if sketch:
        from .evaluate import evaluate_folder

        model.eval()
        metrics["sketch_accuracy"] = evaluate_folder(model, sketch)["accuracy"]
    model = model.float().cpu().to(memory_format=torch.contiguous_format)
    files = {
        "metrics.json": (json.dumps(metrics, indent=2) + "\n").encode(),
        "training_curves.png": curves_png(history),
        "confusion_matrix.png": confusion_png(cm, canonical_examples(ds, canon)),
        "README.md": render_card(model.config, metrics=metrics, repo_id=cfg.push_to_hub, command=cfg.command).encode(),
    }
    model.save_pretrained(out, extra_files=files)
    if cfg.push_to_hub:
        model.push_to_hub(cfg.push_to_hub, allow_patterns=HUB_FILES)
    return metrics


def canonical_examples(ds: Dataset, canon: np.ndarray | None = None) -> list[np.ndarray]:
    """One canonical image a class, used to label plots without needing a CJK font."""
    if canon is None:  # the training loop passes the array it already has
        canon = preprocess.canonicalize_dataset(ds.images)
    return [canon[np.flatnonzero(ds.labels == c)[0]] if (ds.labels == c).any() else np.zeros((64, 64), np.uint8)
            for c in range(NUM_CLASSES)]


def _default_sketchset() -> str | None:
    p = Path(__file__).resolve().parent.parent / "data" / "sketchset"
    return str(p) if (p / "labels.csv").exists() else None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def without_resume(args: list[str]) -> list[str]:
    """A recorded command's arguments less --resume: where a run picked up says nothing about how
    to make it; the same command without it makes the same model."""
    return [a for a in args if a != "--resume"]


def command_line() -> str:
    """The command as a reader would retype it (the card shows it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = ["torchrun", f"--nproc_per_node={world}"] if "LOCAL_RANK" in os.environ else ["python"]
    args = without_resume(sys.argv[1:])
    return " ".join(shlex.quote(a) for a in [*launcher, Path(sys.argv[0]).name, *args])

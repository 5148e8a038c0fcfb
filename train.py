#!/usr/bin/env python
"""Train the CNN or ResNet-18 on Chinese MNIST; writes a model folder ready for a hub repo.

    python train.py --model resnet18 --data chinese-mnist.zip --out models/chnmnist-resnet18
    torchrun --standalone --nproc_per_node=4 train.py --model resnet18 --data chinese-mnist.zip --out out/r18
"""
import argparse
import errno
import os
import sys

from chnmnist_hub.errors import ChnmnistError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["cnn", "resnet18"], default="resnet18", help="architecture (default resnet18)")
    p.add_argument("--data", default=os.environ.get("CHNMNIST_DATA"),
                   help="Chinese MNIST: the Kaggle zip, its unpacked folder, or the chn_mnist pickle (default $CHNMNIST_DATA)")
    p.add_argument("--split", choices=["random", "writer"], default="writer",
                   help="writer: suites 1-90 train (86-90 validation), 91-100 test; random: seeded stratified 900/100 per class")
    p.add_argument("--val-writers", metavar="SUITES",
                   help="writer split: the suites of 1-90 that validate, e.g. 1-10 (default 86-90); to compare recipes over other writers")
    p.add_argument("--no-val", action="store_true",
                   help="the validation images train too (a final fit once the recipe is chosen); nothing is validated")
    p.add_argument("--init", metavar="MODEL_DIR",
                   help="start from the weights of this model folder (same model and split); with --epochs 0 --swa-epochs N, "
                        "N more averaged epochs")
    p.add_argument("--epochs", type=int, help="passes over the training set (recipe default: CNN 30, ResNet 24; seed 20)")
    p.add_argument("--lr", type=float, help="peak learning rate (ours: 0.1 with warm-up and cosine decay; seed: 1e-5 constant)")
    p.add_argument("--batch-size", type=int, help="global batch, shared among processes (ours 256, seed 64)")
    p.add_argument("--weight-decay", type=float, help="ours 5e-4, seed 0")
    p.add_argument("--label-smoothing", type=float, help="ours 0.1, seed 0")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, initial weights, order and augmentation")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when present")
    p.add_argument("--out", required=True, help="model folder to write (config.json, model.safetensors, README.md, plots, metrics)")
    p.add_argument("--subset", type=int, help="train on only this many training images (smoke runs)")
    p.add_argument("--extra-train", metavar="NPZ", help="extra synthetic training images (tools/make_synth_train.py); never the sketch set")
    p.add_argument("--small-writing", type=float, default=0.0, metavar="SHARE",
                   help="add this share of the training images again, shrunk to 45-75%% before canonicalisation, "
                        "so that small or low-resolution writing is read too (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None, help="train without augmentation")
    p.add_argument("--recipe", choices=["ours", "seed"], default="ours",
                   help="seed: the original report's settings (CNN SGD lr 1e-5 momentum 0.9, ResNet Adam lr 1e-5, batch 64, no augmentation)")
    p.add_argument("--filters", type=int, nargs="+", help="CNN filters per conv layer, e.g. 16 32 or 32 64 (default 16 32; the bundled CNN is 32 64)")
    p.add_argument("--pool", action=argparse.BooleanOptionalAction, default=None, help="CNN max-pooling (default on)")
    p.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None, help="CNN batch norm (default on)")
    p.add_argument("--input-size", type=int, help="ResNet input side: the 64x64 canonical image is enlarged to it (default 64)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the folder to this hub repo at the end")
    p.add_argument("--sketchset", help="labelled image folder to score at the end (default: data/sketchset)")
    p.add_argument("--track-test", action="store_true", help="also log test accuracy every epoch (for benchmarks; never used to choose)")
    p.add_argument("--time-limit", type=float, help="stop after this many seconds of training")
    p.add_argument("--swa-epochs", type=int, default=0,
                   help="after --epochs, this many more at a constant rate, the weights averaged over their ends (default 0: none)")
    p.add_argument("--swa-lr", type=float, help="learning rate of the --swa-epochs (default: a fifth of --lr)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.data:
        print("error: give --data (or set CHNMNIST_DATA): the Chinese MNIST zip from kaggle.com/datasets/gpreda/chinese-mnist", file=sys.stderr)
        return 2
    from chnmnist_hub.training import TrainConfig, command_line, train

    cfg = TrainConfig(**{k: v for k, v in vars(args).items()}, command=command_line())
    try:
        metrics = train(cfg)
    except ChnmnistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno == errno.ENOSPC:
            print(f"error: no space left on the device while writing to {args.out}; the previous files there are untouched", file=sys.stderr)
        else:
            print(f"error: {e.strerror or e} ({e.filename or args.out})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; continue with --resume (checkpoint in {args.out})", file=sys.stderr)
        return 130
    if metrics:
        line = f"test accuracy {metrics['test_accuracy']:.4f} ({metrics['split']} split, {metrics['n_test']} images)"
        if "sketch_accuracy" in metrics:
            line += f", sketch set {metrics['sketch_accuracy']:.4f}"
        print(f"{line}; {metrics['train_seconds']:.1f}s of training on {metrics['device']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m chnmnist_hub predict|evaluate: one JSON object a line, never a traceback."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from .errors import ChnmnistError, ImageError

EXIT_OK, EXIT_FILE_ERROR, EXIT_FAILURE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage dump
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_FAILURE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m chnmnist_hub", description="Read handwritten Chinese numerals.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    pr = sub.add_parser("predict", help="predict the character in each image file")
    pr.add_argument("--model", action="append", required=True, help="model folder or hub repo id; repeat for several")
    pr.add_argument("--top-k", type=int, default=5, help="how many classes to list (1-15, default 5)")
    pr.add_argument("files", nargs="+", metavar="FILE")
    ev = sub.add_parser("evaluate", help="accuracy on data the model did not train on")
    ev.add_argument("--model", required=True, help="model folder or hub repo id")
    ev.add_argument("--data", required=True, help="Chinese MNIST zip, folder or chn_mnist pickle; or a folder with labels.csv")
    ev.add_argument("--split", choices=["random", "writer"], help="default: the split the model was trained on")
    return p


def _emit(obj: dict) -> None:
    """One JSON object a line. Where stdout cannot encode a character (a file name that is not valid
    UTF-8, a terminal that is not UTF-8), that line is written in ASCII escapes: still valid JSON."""
    try:
        print(json.dumps(obj, ensure_ascii=False), flush=True)
    except UnicodeEncodeError:
        print(json.dumps(obj), flush=True)


def _predict(args) -> int:
    import torch

    from . import preprocess
    from .hub import load_model

    if not 1 <= args.top_k <= 15:
        print("error: --top-k must be between 1 and 15", file=sys.stderr)
        return EXIT_FAILURE
    models = [(name, load_model(name)) for name in args.model]
    status = EXIT_OK
    for start in range(0, len(args.files), 256):
        files = args.files[start : start + 256]
        inputs, errors = {}, {}
        for f in files:
            try:
                inputs[f] = preprocess.canonicalize(f)
            except ImageError as e:
                errors[f] = str(e)
        results = {}
        if inputs:
            batch = torch.stack(list(inputs.values()))
            for name, model in models:
                for f, top in zip(inputs, model.predict_canonical(batch, top_k=args.top_k)):
                    results[(f, name)] = top
        for f in files:
            if f in errors:
                status = EXIT_FILE_ERROR
                _emit({"file": f, "error": errors[f]})
                continue
            for name, _ in models:
                _emit({"file": f, "model": name, "top": results[(f, name)]})
    return status


def _evaluate(args) -> int:
    from .evaluate import evaluate
    from .hub import load_model

    model = load_model(args.model)
    result = evaluate(model, args.data, args.split)
    print(f"{args.model}: accuracy {result['accuracy']:.4f} on {result['n']} images ({result['split']})", file=sys.stderr)
    out = {"model": args.model, "data": args.data, "accuracy": round(result["accuracy"], 6), "n": result["n"],
           "split": result["split"], "per_class_accuracy": result["per_class_accuracy"]}
    _emit(out)
    return EXIT_OK


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its retry warnings are not for our users; failures still reach them
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # such images get their own line
    try:
        return _predict(args) if args.command == "predict" else _evaluate(args)
    except ChnmnistError as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
    except Exception as e:  # anything unforeseen still gets one line, not a traceback
        print(f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unexpected failure'}", file=sys.stderr)
    return EXIT_FAILURE

"""Draw or upload a Chinese numeral and see what two models read: a small CNN and a ResNet-18.

    python demo/app.py [--cnn M] [--resnet M] [--port 7860] [--host 127.0.0.1] [--share]

M is a model folder or a hub repo id (also CHNMNIST_CNN / CHNMNIST_RESNET); the defaults are the
bundled models/chnmnist-cnn and models/chnmnist-resnet18. The page is at http://127.0.0.1:7860.
API: one endpoint, /predict: an image file in, {"cnn": {"top": [...], "ms": ...}, "resnet18": ...}
or {"error": "..."} out.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python demo/app.py` from a checkout without `pip install -e .`
import chnmnist_hub as ch  # noqa: E402

log = logging.getLogger("chnmnist_demo")
warnings.filterwarnings("ignore", category=PIL.Image.DecompressionBombWarning)  # canonical() refuses those
EXAMPLES = sorted((Path(__file__).parent / "examples").glob("*.png"))
NAMES = {"cnn": "CNN", "resnet18": "ResNet-18"}
DRAW_PROMPT = "Draw a character"
PREVIEW = 192  # the 64x64 canonical input, enlarged 3x
# System fonts only: the page must render with no internet, and this way it fetches no font at all.
THEME = gr.themes.Default(font=["system-ui", "Segoe UI", "Noto Sans", "Helvetica", "Arial", "sans-serif"],
                          font_mono=["ui-monospace", "Menlo", "Consolas", "DejaVu Sans Mono", "monospace"])
CSS = "#status {min-height: 2.5em} #status p {font-size: 1.15em}"
# Gradio 6's sketchpad starts with no tool chosen ("select the draw tool to start"): choose the
# brush for the user, the way a click would, as soon as the editor is on the page.
SELECT_BRUSH = """() => {
  let tries = 0;
  const timer = setInterval(() => {
    const pad = document.querySelector("#sketchpad");
    const brush = pad && (pad.querySelector('button[title="Brush"]') || pad.querySelector(".toolbar-wrap button"));
    if (brush && pad.querySelector("canvas")) {
      if (brush.classList.contains("highlight")) clearInterval(timer); else brush.click();
    }
    if (++tries > 300) clearInterval(timer);
  }, 100);
}"""
MODELS: dict[str, ch.ChnmnistModel] = {}  # filled by build_app: {"cnn": ..., "resnet18": ...}


class Upload(gr.Image):
    """gr.Image that hands over the file even when Pillow cannot open it, so that a corrupt or
    oversized upload gets our plain message instead of Gradio's error toast."""

    is_template = True  # rendered by the frontend as a plain gr.Image

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception:
            return None if payload is None else (payload.path or "")


def canonical(image) -> torch.Tensor:
    """Any image (file path, PIL, numpy) -> the models' (1, 64, 64) input, or ImageError in plain words
    (NoCharacterError when there is nothing to read)."""
    if image is None or (isinstance(image, str) and not image):
        raise ch.NoCharacterError("no image was given")
    try:
        return ch.canonicalize(image)
    except ch.ImageError as e:  # its message names the file: Gradio's temp path means nothing to users
        message = str(e).replace(str(image), "the file") if isinstance(image, (str, Path)) else str(e)
        raise type(e)(message) from None
    except Exception:  # a bug must cost one request, not the app
        log.exception("canonicalize failed")
        raise ch.ImageError("this image could not be processed") from None


def run_models(x: torch.Tensor, models: dict | None = None) -> dict:
    """Every model on one canonical tensor: {"cnn": {"top": [...5], "ms": ...}, "resnet18": ...}."""
    result = {}
    for key, model in (MODELS if models is None else models).items():
        start = time.perf_counter()
        top = model.predict_canonical(x[None], top_k=5)[0]
        result[key] = {"top": top, "ms": round(1000 * (time.perf_counter() - start), 2)}
    return result


def predict_both(image, models: dict | None = None) -> dict:
    """The /predict endpoint: one image -> both models' top-5 and ms, or {"error": "..."}."""
    try:
        x = canonical(image)
    except ch.ImageError as e:
        return {"error": str(e)}
    return run_models(x, models)


def label_text(item: dict) -> str:
    return f"{item['character']} ({item['value']:,})"


def agreement(result: dict) -> str:
    reads = {NAMES[k]: label_text(v["top"][0]) for k, v in result.items()}
    if len(set(reads.values())) == 1:
        return f"✅ Both models read **{next(iter(reads.values()))}**."
    return "🤔 The models disagree: " + ", ".join(f"{n} reads **{r}**" for n, r in reads.items()) + "."


def show(image, prompt: str = DRAW_PROMPT, explain_blank: bool = False, models: dict | None = None) -> tuple:
    """Everything the page shows for one image: (status line, per model: top-5 and ms, preview).
    No image, or (unless explain_blank) one with nothing to read, shows the prompt and no answers."""
    keys = list(MODELS if models is None else models)
    try:
        x = canonical(image)
    except ch.ImageError as e:
        blank = image is None or (isinstance(e, ch.NoCharacterError) and not explain_blank)
        status = f"✏️ **{prompt}**" if blank else f"⚠️ {str(e)[:1].upper()}{str(e)[1:]}"
        return (status, *[None, ""] * len(keys), None)
    result = run_models(x, models)
    outputs = []
    for key in keys:
        outputs += [{label_text(t): t["probability"] for t in result[key]["top"]}, f"⏱ {result[key]['ms']:.1f} ms"]
    canon = (x[0] * 255).round().to(torch.uint8).numpy()
    preview = np.kron(canon, np.ones((PREVIEW // canon.shape[0],) * 2, np.uint8))  # nearest-neighbour
    return (agreement(result), *outputs, preview)


def show_drawing(editor_value) -> tuple:
    return show((editor_value or {}).get("composite"), DRAW_PROMPT)


def show_upload(image) -> tuple:
    return (gr.Tabs(selected="upload"), *show(image, "Upload an image, or click an example", explain_blank=True))


def model_header(key: str, model: ch.ChnmnistModel) -> str:
    n = model.num_parameters
    return f"### {NAMES[key]}\n{n / 1e6:.2f} M parameters · {n * 4 / 2**20:.1f} MB (float32)"


def characters_note() -> str:
    labels = ch.LABELS
    return ("### The 15 characters\n"
            "| " + " | ".join(l.character for l in labels) + " |\n"
            "|" + "---|" * len(labels) + "\n"
            "| " + " | ".join(f"{l.value:,}" for l in labels) + " |\n"
            "| " + " | ".join(l.pinyin for l in labels) + " |\n\n"
            "零 is zero; 十 百 千 万 亿 are ten, hundred, thousand, ten thousand and a hundred million "
            "(亿 = 10⁸). Larger numbers combine them: 三千五百 is 3 500.")


def build_app(cnn_model: ch.ChnmnistModel, resnet_model: ch.ChnmnistModel) -> gr.Blocks:
    MODELS.clear()
    MODELS.update(cnn=cnn_model, resnet18=resnet_model)
    with gr.Blocks(title="Chinese numerals: CNN vs ResNet-18") as demo:
        gr.Markdown("# Handwritten Chinese numerals\nDraw one of 零 一 二 三 四 五 六 七 八 九 十 百 千 万 亿, "
                    "or upload a photo of one; two models read it as you go.")
        with gr.Row():
            with gr.Column(scale=5):
                with gr.Tabs() as tabs:
                    with gr.Tab("Draw", id="draw"):
                        pad = gr.Sketchpad(
                            label="Draw here (undo and clear are top right)", elem_id="sketchpad", height=520,
                            canvas_size=(400, 400), fixed_canvas=True, layers=False, transforms=(),
                            brush=gr.Brush(default_size=10, colors=["#000000"], color_mode="fixed"),
                            eraser=gr.Eraser(default_size=16), type="numpy", image_mode="RGBA", format="png")
                    with gr.Tab("Upload", id="upload"):
                        upload = Upload(label="A photo or scan of one character", elem_id="upload", height=440,
                                        sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None)
                gr.Examples([str(p) for p in EXAMPLES], inputs=upload, label="Examples: scans (dark) and drawings")
            with gr.Column(scale=6):
                status = gr.Markdown(f"✏️ **{DRAW_PROMPT}**", elem_id="status")
                per_model = []
                with gr.Row():
                    for key, model in MODELS.items():
                        with gr.Column(min_width=220, elem_id=f"model-{key}"):
                            gr.Markdown(model_header(key, model))
                            per_model += [gr.Label(num_top_classes=5, label=f"{NAMES[key]}: top 5", elem_id=f"label-{key}"),
                                          gr.Markdown(elem_id=f"ms-{key}")]
                with gr.Row():
                    preview = gr.Image(label="What the models see", height=PREVIEW + 40, width=PREVIEW + 20, scale=0,
                                       min_width=PREVIEW + 20, interactive=False, format="png", buttons=[])
                    gr.Markdown("Every image, drawn or photographed, is turned into the same 64×64 form before "
                                "the models see it: the character cropped, scaled, centred and redrawn with strokes "
                                "of one width, bright on black. Shown here 3× enlarged.")
        gr.Markdown(characters_note())
        outputs = [status, *per_model, preview]
        ui = dict(trigger_mode="always_last", show_progress="hidden", api_visibility="private")
        pad.change(show_drawing, pad, outputs, **ui)
        upload.change(show_upload, upload, [tabs, *outputs], **ui)
        demo.load(None, js=SELECT_BRUSH)
        with gr.Row(visible=False):  # the /predict endpoint, for gradio_client and curl
            api_in, api_out = Upload(type="filepath", image_mode=None), gr.JSON()
            gr.Button().click(predict_both, api_in, api_out, api_name="predict")
    return demo


def load_models(cnn: str, resnet: str) -> tuple[ch.ChnmnistModel, ch.ChnmnistModel]:
    """Both models, or SystemExit(2) after one plain line on stderr."""
    loaded = []
    for what, name in (("CNN", cnn), ("ResNet-18", resnet)):
        try:
            loaded.append(ch.load_model(name))
        except Exception as e:  # ModelError is already one plain sentence; anything else, make it one
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"demo: cannot load the {what} model: {reason}", file=sys.stderr)
            raise SystemExit(2) from None
    return loaded[0], loaded[1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cnn", default=os.environ.get("CHNMNIST_CNN", str(ROOT / "models" / "chnmnist-cnn")),
                   help="the CNN: a model folder or hub repo id (default: $CHNMNIST_CNN or models/chnmnist-cnn)")
    p.add_argument("--resnet", default=os.environ.get("CHNMNIST_RESNET", str(ROOT / "models" / "chnmnist-resnet18")),
                   help="the ResNet-18 (default: $CHNMNIST_RESNET or models/chnmnist-resnet18)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))  # requests run in parallel threads
    demo = build_app(*load_models(args.cnn, args.resnet))
    warm_up = np.full((64, 64), 255, np.uint8)
    warm_up[30:34, 8:56] = 0
    predict_both(warm_up)  # the first call into torch is slow; let it not be a user's
    demo.queue(default_concurrency_limit=8, max_size=64)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, theme=THEME, css=CSS,
                    footer_links=["api"], show_error=False, max_file_size="50mb")
    except OSError as e:
        print(f"demo: cannot serve on {args.host}:{args.port}: {str(e).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

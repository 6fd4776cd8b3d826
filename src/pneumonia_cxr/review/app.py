"""The review page (Gradio): the X-ray, the model's calibrated P(pneumonia) and its decision at the validation-chosen
threshold, the ternary probabilities, and the Grad-CAM overlay of that decision; the reviewer agrees or corrects, and
the answer goes to the SQLite store (`store.py`).

    pneumonia-cxr review --models models/ --db reviews.sqlite [--inbox DIR] [--host 127.0.0.1] [--port 7860]
    pneumonia-cxr review export --db reviews.sqlite --out reviews.csv

Local by default (127.0.0.1), analytics off, never a public share link. The inbox and the images are only read.
A file the decoder refuses (not an image, truncated, too small or too large) gets a message on the page and nothing
is stored. Keys: a agree, n normal, b bacterial, v viral, u not readable, Ctrl+Enter save.
Research code, not a medical device.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np

from .store import ANSWERS, TERNARY_OF, ReviewStore, ReviewStoreError, agreement, export_csv, sha256_of

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SHORTCUTS = """
<script>
document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (e.ctrlKey && e.key === "Enter") { document.querySelector("#save")?.click(); e.preventDefault(); return; }
  const typing = t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "radio"));
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  const value = {a: "agree", n: "normal", b: "bacterial", v: "viral", u: "not readable"}[e.key];
  const input = value && document.querySelector(`#answer input[value="${value}"]`);
  if (input) { input.click(); e.preventDefault(); }
});
</script>
"""


def inbox_files(inbox: Path | None) -> list[Path]:
    """The image files under `inbox`, sorted, symlinked folders not followed (a loop cannot hang the list)."""
    if inbox is None:
        return []
    found = []
    for folder, _, files in os.walk(inbox, followlinks=False):
        found += [Path(folder) / f for f in files if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
    return sorted(found)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(gray, np.uint8)[..., None], 3, axis=2)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """The heat map in the jet colours over the grey image, as `predict --gradcam` draws it."""
    from matplotlib import colormaps

    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3] * 255
    return ((1 - alpha) * _rgb(image) + alpha * heat).clip(0, 255).astype(np.uint8)


def thumbnail_png(path, side: int = 160) -> bytes:
    from PIL import Image

    from ..data.decode import decode_gray

    gray = decode_gray(path, side)
    gray.thumbnail((side, side))
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(gray)).save(buffer, "PNG")
    return buffer.getvalue()


class Review:
    """The page's logic, apart from the page: load a case, save an answer, summarise. Each method returns what the
    page shows, so a test can drive it without a browser."""

    def __init__(self, scorer, store: ReviewStore, inbox: Path | None = None):
        self.scorer, self.store, self.inbox = scorer, store, inbox
        self._hashes: dict[tuple[str, int, int], str] = {}

    def _sha(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = sha256_of(path)
        return self._hashes[key]

    def worklist(self) -> list[str]:
        """Inbox images without an answer yet, in order."""
        done = self.store.reviewed()
        return [str(p) for p in inbox_files(self.inbox) if self._sha(p) not in done]

    def load(self, path: str | None, shown_as: str | None = None) -> dict:
        """Score one file: {"message", "image", "overlay", "call", "ternary", "case"}; for a refused file only a
        message naming it, and no case (so nothing can be stored for it)."""
        empty = {"image": None, "overlay": None, "call": "", "ternary": None, "case": None}
        if not path:
            return {**empty, "message": "Choose an image from the inbox or drop one here."}
        name = shown_as or str(path)
        rows, errors = self.scorer.score_files([path])
        if errors:
            why = errors[0][1].replace(str(path), name)
            return {**empty, "message": f"**Not scored:** {why}. Nothing was stored for this file."}
        row = rows[0]
        image, cam = self.scorer.explain(path, row["decision"] == "PNEUMONIA")
        call = (
            f"**P(pneumonia) = {row['p_pneumonia']:.3f}** (calibrated); threshold {row['threshold']:.3f} "
            f"-> **{row['decision']}**"
        )
        case = {"path": name, "file": str(path), "sha256": sha256_of(path), **row}
        ternary = {TERNARY_OF.get(c, c): v for c, v in row.get("ternary", {}).items()} or None
        return {
            "message": f"Scored `{Path(name).name}`.",
            "image": _rgb(image),
            "overlay": overlay(image, cam),
            "call": call,
            "ternary": ternary,
            "case": case,
        }

    def save(self, case: dict | None, reviewer: str, answer: str | None, note: str = "") -> str:
        """Store the answer as a new row; the message says what happened (never a silent loss)."""
        if case is None:
            return "**Not saved:** no scored image on the page."
        if not (reviewer or "").strip():
            return "**Not saved:** enter your name first."
        if answer not in ANSWERS:
            return f"**Not saved:** choose an answer ({', '.join(ANSWERS)})."
        try:
            row_id = self.store.add_answer(
                sha256=case["sha256"],
                path=case["path"],
                model_file=self.scorer.model_path,
                model_commit=self.scorer.meta.get("git_commit"),
                p_pneumonia=case["p_pneumonia"],
                threshold=case["threshold"],
                decision=case["decision"],
                ternary=case.get("ternary"),
                reviewer=reviewer,
                answer=answer,
                note=note or "",
                thumbnail_png=thumbnail_png(case["file"]),
            )
        except ReviewStoreError as exc:
            return f"**Not saved:** {exc}"
        return f"Saved answer {row_id}: `{Path(case['path']).name}` -> {answer} ({reviewer.strip()})."

    def summary(self) -> tuple[str, object, list]:
        """(counts and kappa as text, the confusion table, the disagreements as (thumbnail, caption))."""
        from PIL import Image

        stats = agreement(self.store.answers())
        kappa = "-" if stats["kappa"] is None else f"{stats['kappa']:.3f}"
        text = (
            f"**{stats['images reviewed']} images reviewed** ({stats['answers']} answers); model and reviewer "
            f"agree on {stats['agree']}, not readable {stats['not readable']}; Cohen's kappa {kappa}."
        )
        gallery = []
        for _, r in stats["disagreements"].iterrows():
            png = self.store.thumbnail(r["sha256"])
            if png is not None:
                gallery.append(
                    (
                        Image.open(io.BytesIO(png)),
                        f"{Path(r['path']).name}: model {r['decision']}, {r['reviewer']} {r['label']}",
                    )
                )
        return text, stats["confusion"].rename_axis(index="model \\ reviewer").reset_index(), gallery


def build_app(review: Review):
    """The Gradio page over a `Review`."""
    import gradio as gr

    with gr.Blocks(title="Pneumonia X-ray review", analytics_enabled=False) as app:
        gr.Markdown(
            "# Chest X-ray review\nThe model's call, why, and your answer. Research code, not a medical device."
        )
        with gr.Tab("Review"):
            reviewer = gr.Textbox(label="Your name (asked once)", elem_id="reviewer")
            with gr.Row():
                worklist = gr.Dropdown(
                    choices=review.worklist(), label="Inbox: not yet reviewed", elem_id="worklist", interactive=True
                )
                upload = gr.File(label="Or drop one X-ray here", elem_id="upload")
            message = gr.Markdown(elem_id="message")
            with gr.Row():
                image = gr.Image(
                    label="X-ray (as the model sees it)", interactive=False, elem_id="xray", buttons=["fullscreen"]
                )
                heat = gr.Image(
                    label="Grad-CAM of the decision", interactive=False, elem_id="gradcam", buttons=["fullscreen"]
                )
            with gr.Row():
                call = gr.Markdown(elem_id="call")
                ternary = gr.Label(label="normal / bacterial / viral", elem_id="ternary")
            answer = gr.Radio(list(ANSWERS), label="Your answer (keys a, n, b, v, u)", elem_id="answer")
            note = gr.Textbox(label="Note (optional)", elem_id="note")
            save = gr.Button("Save answer (Ctrl+Enter)", variant="primary", elem_id="save")
            case = gr.State(None)
        with gr.Tab("Summary"):
            refresh = gr.Button("Refresh", elem_id="refresh")
            counts = gr.Markdown(elem_id="counts")
            confusion = gr.Dataframe(label="Model decision by reviewer (latest readable answer per image)")
            gallery = gr.Gallery(label="Where reviewer and model disagree", columns=6, elem_id="disagreements")

        shown = [message, image, heat, call, ternary, case]

        def show(path, shown_as=None):
            r = review.load(path, shown_as)
            return r["message"], r["image"], r["overlay"], r["call"], r["ternary"], r["case"]

        worklist.change(lambda p: show(p), inputs=worklist, outputs=shown)
        upload.upload(lambda f: show(f, Path(f).name if f else None), inputs=upload, outputs=shown)

        def on_save(c, name, a, n):
            text = review.save(c, name, a, n)
            remaining = review.worklist()
            if not text.startswith("Saved"):
                return text, gr.update(), gr.update(), gr.update()
            return text, gr.update(choices=remaining, value=remaining[0] if remaining else None), None, ""

        save.click(on_save, inputs=[case, reviewer, answer, note], outputs=[message, worklist, answer, note])
        refresh.click(review.summary, outputs=[counts, confusion, gallery])
    return app


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        parser = argparse.ArgumentParser(prog="pneumonia-cxr review export")
        parser.add_argument("--db", required=True)
        parser.add_argument("--out", required=True)
        args = parser.parse_args(argv[1:])
        if not Path(args.db).is_file():
            print(f"error: {args.db}: no review database there", file=sys.stderr)
            return 2
        print(f"{export_csv(ReviewStore(args.db), args.out)}: answers written")
        return 0
    parser = argparse.ArgumentParser(
        prog="pneumonia-cxr review", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="models", help="folder with the binary and ternary .keras models")
    parser.add_argument("--binary", default="ensemble", help="the binary model's name in --models")
    parser.add_argument("--ternary", default="ternary", help="the ternary model's name in --models ('' for none)")
    parser.add_argument("--db", default="reviews.sqlite")
    parser.add_argument("--inbox", help="a folder of X-rays to review (read only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..scoring import Scorer, ScorerError

    inbox = Path(args.inbox) if args.inbox else None
    if inbox is not None and not inbox.is_dir():
        print(f"error: {inbox}: inbox folder does not exist", file=sys.stderr)
        return 2
    try:
        models = Path(args.models)
        scorer = Scorer(models / f"{args.binary}.keras", models / f"{args.ternary}.keras" if args.ternary else None)
        store = ReviewStore(args.db)
    except (ScorerError, ReviewStoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = build_app(Review(scorer, store, inbox))
    print(f"review app on http://{args.host}:{args.port} (answers to {args.db}); Ctrl+C stops it", flush=True)
    app.queue().launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        inbrowser=False,
        quiet=True,
        head=SHORTCUTS,
        footer_links=[],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

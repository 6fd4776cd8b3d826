"""The review page (Gradio): the X-ray, the model's calibrated P(pneumonia) and its decision at the validation-chosen
threshold, the ternary probabilities, and the Grad-CAM overlay of that decision; the reviewer agrees or corrects, and
the answer goes to the SQLite store (`store.py`).

    pneumonia-cxr review --models models/ --db reviews.sqlite [--inbox DIR] [--prevalence P | --local local.json]
        [--host 127.0.0.1]
    pneumonia-cxr review export --db reviews.sqlite --out reviews.csv
    pneumonia-cxr review evaluate --db reviews.sqlite [--out report.md]      (evaluation.py: the local evaluation)
    pneumonia-cxr review calibrate --db reviews.sqlite --out local.json     (recalibration.py: a local calibration)

The Summary tab shows the agreement and the local evaluation of the reviewed cases (`evaluation.py`); with --local,
the page shows the locally calibrated call (`local_calibration.py`) and its answers are stored marked with the file.

Local by default (127.0.0.1), analytics off, never a public share link, uploads limited in size (--max-upload-mb).
The inbox and the images are only read, and only regular files in it are listed or opened. A file the decoder refuses
(not an image, truncated, too small or too large) gets a message on the page and nothing is stored.

Invariant: an answer is stored only for the image on screen. A save carries the SHA-256 of the image the page shows
and the file chosen in the inbox list or the upload box; it is refused (a message, nothing stored) unless that file's
bytes, the image scored and the image shown are one and the same. Text that a reviewer or a file name brings is shown
as text, never as markup. Keys: a agree, n normal, b bacterial, v viral, u not readable, Ctrl+Enter save.
Research code, not a medical device.
"""

from __future__ import annotations

import argparse
import html
import inspect
import io
import logging
import os
import re
import stat
import sys
from pathlib import Path

import numpy as np

from ..predict import share  # the same rule for --prevalence as predict
from .store import (
    ANSWERS,
    TERNARY_OF,
    NotARegularFileError,
    ReviewStore,
    ReviewStoreError,
    agreement,
    export_csv,
    sha256_of,
)

LOG = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
MAX_UPLOAD_MB = 50  # a 16-bit PNG of the largest radiographs (~3,000 px a side) is under 20 MB
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
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]!|~])")  # inline markup; a message never starts with such text


def as_text(value) -> str:
    """`value` for a Markdown component, shown literally: HTML escaped and Markdown punctuation backslashed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(value), quote=False))


def is_regular_file(path) -> bool:
    """True for a regular file or a link to one (a FIFO, device or folder named like an image is not)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def inbox_files(inbox: Path | None) -> list[Path]:
    """The regular image files under `inbox`, sorted; symlinked folders are not followed (a loop cannot hang the
    list), and a FIFO or device named like an image is left out (reading one would wait forever)."""
    if inbox is None:
        return []
    found = []
    for folder, _, files in os.walk(inbox, followlinks=False):
        for name in files:
            path = Path(folder) / name
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".") and is_regular_file(path):
                found.append(path)
    return sorted(found)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(gray, np.uint8)[..., None], 3, axis=2)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """The heat map in the jet colours over the grey image, as `predict --gradcam` draws it."""
    from matplotlib import colormaps

    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3] * 255
    return ((1 - alpha) * _rgb(image) + alpha * heat).clip(0, 255).astype(np.uint8)


def thumbnail_png(path, side: int = 160) -> bytes:
    """A PNG thumbnail of the file (as the decoder reads it), at most `side` px a side."""
    from PIL import Image

    from ..data.decode import decode_gray

    gray = decode_gray(path, side)
    gray.thumbnail((side, side))
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(gray)).save(buffer, "PNG")
    return buffer.getvalue()


def describe_call(row: dict) -> str:
    """The binary call as the page shows it, from the scorer's row (P(pneumonia) calibrated, the threshold on the
    same scale, and the prevalence the probability is stated for, or the local calibration, when the scorer reports
    one)."""
    prevalence = row.get("prevalence")
    scale = "calibrated" if prevalence is None else f"calibrated to a prevalence of {float(prevalence):.1%}"
    if row.get("local_calibration"):
        scale = f"calibrated locally by {row['local_calibration']}"
    return (
        f"**P(pneumonia) = {row['p_pneumonia']:.3f}** ({as_text(scale)}); threshold {row['threshold']:.3f} "
        f"-> **{row['decision']}**"
    )


def describe_ternary(row: dict) -> str:
    """The ternary panel from the scorer's row: the type shown (the scorer's `ternary_label`, which agrees with the
    binary call) and the three probabilities in a fixed order, the binary P(pneumonia) split by the ternary model; a
    line saying there is no split when the scorer has no ternary model."""
    probs = {TERNARY_OF.get(c, c): float(v) for c, v in (row.get("ternary") or {}).items()}
    if not probs:
        return "No ternary model loaded: no bacterial / viral split."
    label = row.get("ternary_label")
    if label is None:  # a scorer without labels: the subtype only where the call is PNEUMONIA
        label = "normal" if row["decision"] == "NORMAL" else max(("bacterial", "viral"), key=probs.get)
    label = TERNARY_OF.get(label, label)
    kind = "normal" if label == "normal" else f"{label} pneumonia"
    numbers = " · ".join(f"P({c}) {probs[c]:.3f}" for c in ("normal", "bacterial", "viral") if c in probs)
    text = f"**Type: {as_text(kind)}**  \n{numbers} (P(normal) = 1 - P(pneumonia); the ternary model splits the rest)"
    if label != "normal" and probs.get("normal", 0) >= max(probs.get("bacterial", 0), probs.get("viral", 0)):
        text += "  \nP(normal) is the largest, but the call is made at the validation-chosen threshold above."
    return text


class Review:
    """The page's logic, apart from the page: load a case, save an answer, summarise. Each method returns what the
    page shows, so a test can drive it without a browser. It keeps no per-reviewer state: the page holds the case."""

    def __init__(self, scorer, store: ReviewStore, inbox: Path | None = None, reference: dict | None = None):
        self.scorer, self.store, self.inbox, self.reference = scorer, store, inbox, reference
        self._hashes: dict[tuple[str, int, int], str] = {}

    def _sha(self, path: Path) -> str:
        stat_ = path.stat()
        key = (str(path), stat_.st_size, stat_.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = sha256_of(path)
        return self._hashes[key]

    def worklist(self) -> list[str]:
        """Inbox images without an answer yet, in order, as the store has them now; a file that cannot be read is
        left out with a logged warning."""
        done, todo = self.store.reviewed(), []
        for path in inbox_files(self.inbox):
            try:
                if self._sha(path) not in done:
                    todo.append(str(path))
            except OSError as exc:
                LOG.warning("%s: left out of the inbox list (%s)", path, exc)
        return todo

    def load(self, path: str | None, shown_as: str | None = None) -> dict:
        """Score one file: {"message", "image", "overlay", "call", "ternary", "case", "sha256"}; for a refused file
        only a message naming it, and no case (so nothing can be stored for it)."""
        empty = {"image": None, "overlay": None, "call": "", "ternary": "", "case": None, "sha256": ""}
        if not path:
            return {**empty, "message": "Choose an image from the inbox or drop one here."}
        name = shown_as or str(path)
        refused = "**Not scored:** {}. Nothing was stored for this file."
        try:
            sha = sha256_of(path)  # first: it never blocks, and refuses a FIFO before the decoder could open it
        except NotARegularFileError:
            return {**empty, "message": refused.format(as_text(f"{name}: not a regular file"))}
        except OSError as exc:
            return {**empty, "message": refused.format(as_text(f"{name}: cannot be read ({exc.strerror or exc})"))}
        rows, errors = self.scorer.score_files([path])
        if errors:
            return {**empty, "message": refused.format(as_text(errors[0][1].replace(str(path), name)))}
        row = rows[0]
        image, cam = self.scorer.explain(path, row["decision"] == "PNEUMONIA")
        case = {"path": name, "file": str(path), "sha256": sha, "thumbnail": thumbnail_png(path), **row}
        return {
            "message": f"Scored **{as_text(Path(name).name)}** (SHA-256 {sha[:12]}).",
            "image": _rgb(image),
            "overlay": overlay(image, cam),
            "call": describe_call(row),
            "ternary": describe_ternary(row),
            "case": case,
            "sha256": sha,
        }

    def _not_on_screen(self, case: dict, shown_sha256: str | None, chosen) -> str | None:
        """Why an answer cannot be stored for `case`, or None: the image shown, the file chosen and the case scored
        must be the same bytes."""
        chosen = [c for c in chosen if c]
        shown = as_text(Path(case["path"]).name)
        still = "**Not saved:** the page was still changing to {} (the X-ray shown was {}); nothing was stored. "
        still += "Look at the X-ray on screen and save again."
        if not chosen:
            return f"**Not saved:** no image is chosen on the page (the X-ray shown was {shown}); nothing was stored."
        if len(chosen) > 1 or shown_sha256 != case["sha256"]:
            return still.format(as_text(Path(chosen[0]).name) if len(chosen) == 1 else "another image", shown)
        try:
            current = sha256_of(chosen[0])
        except OSError as exc:
            why = as_text(f"{Path(chosen[0]).name} cannot be read ({exc})")
            return f"**Not saved:** {why}; nothing was stored."
        if current == case["sha256"]:
            return None
        if str(chosen[0]) == case["file"]:
            return f"**Not saved:** {shown} changed on disk after it was scored; nothing was stored. Choose it again."
        return still.format(as_text(Path(chosen[0]).name), shown)

    def save(
        self, case: dict | None, reviewer: str, answer: str | None, note: str = "", shown_sha256=None, chosen=()
    ) -> str:
        """Store the answer as a new row; the message says what happened (never a silent loss).

        Args:
            case: what `load` scored (the page's state).
            shown_sha256: the SHA-256 of the image the page shows; the save is refused unless it is the case's.
            chosen: the files chosen on the page (the inbox list's and the upload box's, None where empty); exactly
                one must be, with the case's bytes, or the save is refused (the page is still changing image).
        """
        if case is None:
            return "**Not saved:** no scored image on the page."
        why_not = self._not_on_screen(case, shown_sha256, chosen)
        if why_not:
            return why_not
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
                thumbnail_png=case.get("thumbnail"),
                local_calibration=getattr(self.scorer, "local_tag", None),
            )
        except ReviewStoreError as exc:
            return f"**Not saved:** {as_text(exc)}"
        noted = f"; note: {as_text(note.strip())}" if (note or "").strip() else ""
        return (
            f"Saved answer {row_id}: {as_text(Path(case['path']).name)} -> {answer} "
            f"(by {as_text(reviewer.strip())}{noted})."
        )

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
                caption = f"{Path(r['path']).name}: model {r['decision']}, {r['reviewer']} {r['label']}"
                gallery.append((Image.open(io.BytesIO(png)), caption))
        return text, stats["confusion"].rename_axis(index="model \\ reviewer").reset_index(), gallery

    def local_evaluation(self, n_boot: int = 1000) -> tuple[str, np.ndarray | None]:
        """(the local evaluation of the reviewed cases as Markdown, its reliability plot as an RGB array or None):
        the same text `pneumonia-cxr review evaluate` writes, for the answers given to this page's model at its
        shipped operating point (with the local calibration's before and after when the page runs with one)."""
        from PIL import Image

        from .cases import reviewed_cases
        from .evaluation import local_evaluation, reliability_png, report_markdown

        meta = self.scorer.meta if "threshold" in self.scorer.meta else None
        cases = reviewed_cases(self.store.answers(), meta, self.scorer.model_path, self.scorer.meta.get("git_commit"))
        evaluation = local_evaluation(cases, self.reference, getattr(self.scorer, "local", None), n_boot=n_boot)
        png = reliability_png(evaluation)
        plot = None if png is None else np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        return report_markdown(evaluation, str(self.store.path)), plot


def _choices(review: Review) -> list[tuple[str, str]]:
    """The worklist as (name shown, path) pairs: the path relative to the inbox."""
    items = review.worklist()
    return [(os.path.relpath(p, review.inbox) if review.inbox else p, p) for p in items]


def build_app(review: Review):
    """The Gradio page over a `Review`. The inbox list is computed when a page opens (and after each save); its
    first image is loaded with it, so the image selected is the image shown. (Longer than most functions: the page's
    components and the events between them read best in one place.)"""
    import gradio as gr

    with gr.Blocks(title="Pneumonia X-ray review", analytics_enabled=False) as app:
        gr.Markdown(
            "# Chest X-ray review\nThe model's call, why, and your answer. Research code, not a medical device."
        )
        with gr.Tab("Review"):
            reviewer = gr.Textbox(label="Your name (asked once)", elem_id="reviewer")
            with gr.Row():
                worklist = gr.Dropdown(
                    choices=[], value=None, label="Inbox: not yet reviewed", elem_id="worklist", interactive=True
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
                ternary = gr.Markdown(elem_id="ternary")
            answer = gr.Radio(list(ANSWERS), label="Your answer (keys a, n, b, v, u)", elem_id="answer")
            note = gr.Textbox(label="Note (optional)", elem_id="note")
            save = gr.Button("Save answer (Ctrl+Enter)", variant="primary", elem_id="save")
            saved = gr.Markdown(elem_id="saved")
            shown_sha = gr.Textbox(visible="hidden", elem_id="shown-sha")  # the identity of the image on screen
            case, advanced = gr.State(None), gr.State(False)
        with gr.Tab("Summary"):
            refresh = gr.Button("Refresh", elem_id="refresh")
            counts = gr.Markdown(elem_id="counts")
            confusion = gr.Dataframe(label="Model decision by reviewer (latest readable answer per image)")
            local_report = gr.Markdown(elem_id="local-evaluation")
            reliability = gr.Image(
                label="Reliability on the reviewed cases", interactive=False, elem_id="reliability", height=360
            )
            gallery = gr.Gallery(label="Where reviewer and model disagree", columns=6, elem_id="disagreements")

        shown = [message, image, heat, call, ternary, case, shown_sha]

        def show(path, shown_as=None):
            r = review.load(path, shown_as)
            return r["message"], r["image"], r["overlay"], r["call"], r["ternary"], r["case"], r["sha256"]

        def on_page_load():
            choices = _choices(review)
            first = choices[0][1] if choices else None
            return gr.update(choices=choices, value=first), *show(first)

        def on_save(c, sha, choice, uploaded, name, a, n):
            text = review.save(c, name, a, n, sha, (choice, uploaded))
            if not text.startswith("Saved"):
                return text, gr.skip(), gr.skip(), gr.skip(), False
            choices = _choices(review)
            if uploaded:  # an uploaded X-ray stays on screen with its message; the list is brought up to date
                return text, gr.update(choices=choices), None, "", False
            return text, gr.update(choices=choices, value=choices[0][1] if choices else None), None, "", True

        clear_saved = {"fn": None, "inputs": None, "outputs": [saved], "js": "() => ''"}  # a new action: new message
        app.load(on_page_load, outputs=[worklist, *shown])
        worklist.input(**clear_saved)
        worklist.input(lambda p: (*show(p), None), inputs=worklist, outputs=[*shown, upload])
        upload.upload(**clear_saved)
        upload.upload(
            lambda f: (*show(f, Path(f).name if f else None), gr.update(value=None)),
            inputs=upload,
            outputs=[*shown, worklist],
        )
        upload.clear(lambda: show(None), outputs=shown)
        save.click(
            on_save,
            inputs=[case, shown_sha, worklist, upload, reviewer, answer, note],
            outputs=[saved, worklist, answer, note, advanced],
        ).then(  # after a save from the inbox, the next image is loaded, not only selected
            lambda adv, choice: show(choice) if adv else tuple(gr.skip() for _ in shown),
            inputs=[advanced, worklist],
            outputs=shown,
        )
        refresh.click(review.summary, outputs=[counts, confusion, gallery]).then(
            review.local_evaluation, outputs=[local_report, reliability]
        )
    return app


def serve(app, host: str, port: int, max_upload_mb: float = MAX_UPLOAD_MB, block: bool = True):
    """Start the page: local unless `host` says otherwise, no share link, uploads over `max_upload_mb` refused by
    Gradio before they reach the decoder (whose pixel budget refuses a small file that decodes huge)."""
    app.queue().launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        quiet=True,
        head=SHORTCUTS,
        footer_links=[],
        max_file_size=int(max_upload_mb * 1024 * 1024),
        prevent_thread_lock=not block,
    )
    return app


def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pneumonia-cxr review export")
    parser.add_argument("--db", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if not Path(args.db).is_file():
        print(f"error: {args.db}: no review database there", file=sys.stderr)
        return 2
    print(f"{export_csv(ReviewStore(args.db), args.out)}: answers written")
    return 0


def scorer_from_args(args):
    """The Scorer for the CLI's models, given the prevalence where this version of the scorer takes one, and the
    local calibration where --local names one (checked first: a bad file is a ScorerError naming it)."""
    from ..local_calibration import LocalCalibrationError, read_local
    from ..scoring import Scorer, ScorerError, ood_check_beside

    models = Path(args.models)
    kwargs = {}
    if args.prevalence is not None:
        if "prevalence" not in inspect.signature(Scorer).parameters:
            raise ScorerError("--prevalence: this version of the scorer cannot state P(pneumonia) at a prevalence")
        kwargs["prevalence"] = args.prevalence
    if getattr(args, "local", None):
        try:
            kwargs["local"] = read_local(args.local)
        except LocalCalibrationError as exc:
            raise ScorerError(str(exc)) from exc
    binary = models / f"{args.binary}.keras"
    ood = None if args.no_ood_check else ood_check_beside(binary)
    if ood is None and not args.no_ood_check:
        print(f"warning: no out-of-distribution check in {models} (ood.npz): every image gets a call", file=sys.stderr)
    return Scorer(binary, models / f"{args.ternary}.keras" if args.ternary else None, ood=ood, **kwargs)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        return _export(argv[1:])
    if argv[:1] == ["evaluate"]:
        from .evaluation import main as evaluate

        return evaluate(argv[1:])
    if argv[:1] == ["calibrate"]:
        from .recalibration import main as calibrate

        return calibrate(argv[1:])
    parser = argparse.ArgumentParser(
        prog="pneumonia-cxr review", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="models", help="folder with the binary and ternary .keras models")
    parser.add_argument("--binary", default="ensemble", help="the binary model's name in --models")
    parser.add_argument("--ternary", default="ternary", help="the ternary model's name in --models ('' for none)")
    parser.add_argument("--db", default="reviews.sqlite")
    parser.add_argument("--inbox", help="a folder of X-rays to review (read only)")
    parser.add_argument(
        "--prevalence",
        type=share,
        help="the expected share of pneumonia where the model is used (default: the training data's)",
    )
    parser.add_argument(
        "--local", help="a site's local calibration (review calibrate): the page shows the local call (default: none)"
    )
    parser.add_argument("--reference", help="the model card's numbers (default: reports/metrics/MODEL.json)")
    parser.add_argument(
        "--no-ood-check", action="store_true", help="score every image, even one that does not look like a chest X-ray"
    )
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help="largest upload accepted (MB)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ..scoring import ScorerError

    inbox = Path(args.inbox) if args.inbox else None
    if inbox is not None and not inbox.is_dir():
        print(f"error: {inbox}: inbox folder does not exist", file=sys.stderr)
        return 2
    if args.local and args.prevalence is not None:
        print(
            "error: --local and --prevalence: a local calibration is fitted at the site's own share; give one",
            file=sys.stderr,
        )
        return 2
    from .evaluation import EvaluationInputError, find_reference, read_reference

    try:
        scorer = scorer_from_args(args)
        store = ReviewStore(args.db)
        binary = Path(args.models) / f"{args.binary}.keras"
        reference = read_reference(args.reference) if args.reference else find_reference(binary, scorer.meta)
    except (ScorerError, ReviewStoreError, EvaluationInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = build_app(Review(scorer, store, inbox, reference))
    print(f"review app on http://{args.host}:{args.port} (answers to {args.db}); Ctrl+C stops it", flush=True)
    serve(app, args.host, args.port, args.max_upload_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())

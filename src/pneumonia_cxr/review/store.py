"""What reviewers decide, kept in SQLite: one row per answer, never changed, the latest answer for an image counting.

Invariant: an answer, once stored, is never updated or deleted (triggers refuse both); a second answer for the same
image (by its SHA-256) is a new row. The database runs in WAL mode with a busy timeout, every write opens its own
connection and commits at once, and a write that still finds the database locked is retried, then raised as
`ReviewStoreError` for the page to show: an answer is stored or the reviewer is told, never lost silently. Only
regular files are read (a FIFO or device named like an image is refused, never waited on), and the CSV export
neutralises text cells that a spreadsheet would run as a formula. An answer given on a page run with a local calibration
records its file (`local_calibration`), so the shipped model's evaluation can tell such answers apart.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import sqlite3
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ANSWERS = ("agree", "normal", "bacterial", "viral", "not readable")
TERNARY_OF = {"normal": "normal", "bacteria": "bacterial", "virus": "viral"}  # the model's class names -> answers
TERNARY_COLUMNS = ["p_normal", "p_bacterial", "p_viral"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: a cell starting so is run as a formula

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    model_file TEXT NOT NULL,
    model_commit TEXT,
    p_pneumonia REAL NOT NULL,
    threshold REAL NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('NORMAL', 'PNEUMONIA')),
    p_normal REAL, p_bacterial REAL, p_viral REAL,
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    answer TEXT NOT NULL CHECK (answer IN ({", ".join(f"'{a}'" for a in ANSWERS)})),
    note TEXT NOT NULL DEFAULT '',
    answered_at TEXT NOT NULL,
    local_calibration TEXT
);
CREATE INDEX IF NOT EXISTS answers_by_image ON answers (sha256, id);
CREATE TABLE IF NOT EXISTS thumbnails (sha256 TEXT PRIMARY KEY, png BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS answers_never_change BEFORE UPDATE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are never changed: store a new one'); END;
CREATE TRIGGER IF NOT EXISTS answers_never_deleted BEFORE DELETE ON answers
    BEGIN SELECT RAISE(ABORT, 'answers are never deleted'); END;
"""


class ReviewStoreError(RuntimeError):
    """The database cannot be opened or written; the message names it and says what to do."""


class NotARegularFileError(OSError):
    """A path that is not a regular file (a FIFO, a device, a folder); the message names it."""


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a regular file's bytes, the identity an answer is stored under.

    Raises:
        NotARegularFileError: `path` is a FIFO, socket, device or folder (opened without blocking, so a FIFO with no
            writer cannot hang the caller).
        OSError: `path` cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise NotARegularFileError(f"{path}: not a regular file")
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns added since a database was made, added to it (NULL in the rows already there): `local_calibration`,
    the local calibration file the page showed its call with (NULL: the shipped calibration)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(answers)")}
    if "local_calibration" not in columns:
        db.execute("ALTER TABLE answers ADD COLUMN local_calibration TEXT")


class ReviewStore:
    """The answers database at `path`, created if absent.

    Raises:
        ReviewStoreError: the file cannot be created, opened or written (a read-only folder, a locked or foreign file).
    """

    def __init__(self, path: str | Path, timeout: float = 10.0, retries: int = 3):
        self.path, self.timeout, self.retries = Path(path), timeout, retries
        try:
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                _add_missing_columns(db)
                db.execute("BEGIN IMMEDIATE")  # a write lock now: an unwritable or locked file fails at start
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ReviewStoreError(f"{self.path}: cannot open the review database for writing ({exc})") from exc

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        return db

    def _write(self, sql: str, values: tuple) -> int:
        for attempt in range(self.retries):
            try:
                with self._connect() as db:
                    return db.execute(sql, values).lastrowid
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == self.retries - 1:
                    raise ReviewStoreError(f"{self.path}: answer not saved ({exc}); save it again") from exc
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def add_answer(
        self,
        *,
        sha256: str,
        path: str,
        model_file: str,
        model_commit: str | None,
        p_pneumonia: float,
        threshold: float,
        decision: str,
        ternary: dict | None,
        reviewer: str,
        answer: str,
        note: str = "",
        thumbnail_png: bytes | None = None,
        local_calibration: str | None = None,
    ) -> int:
        """Store one answer as a new row (and the image's thumbnail once); returns the row id. `local_calibration`:
        the local calibration file the call was shown with (None: the shipped calibration)."""
        if answer not in ANSWERS:
            raise ValueError(f"answer must be one of {ANSWERS}, not {answer!r}")
        if not reviewer.strip():
            raise ValueError("a reviewer name is needed")
        ternary = ternary or {}
        if thumbnail_png is not None:
            self._write("INSERT OR IGNORE INTO thumbnails (sha256, png) VALUES (?, ?)", (sha256, thumbnail_png))
        return self._write(
            "INSERT INTO answers (sha256, path, model_file, model_commit, p_pneumonia, threshold, decision, p_normal,"
            " p_bacterial, p_viral, reviewer, answer, note, answered_at, local_calibration)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sha256,
                path,
                model_file,
                model_commit,
                float(p_pneumonia),
                float(threshold),
                decision,
                ternary.get("normal"),
                ternary.get("bacteria"),
                ternary.get("virus"),
                reviewer.strip(),
                answer,
                note,
                datetime.now(UTC).isoformat(timespec="seconds"),
                local_calibration,
            ),
        )

    def answers(self) -> pd.DataFrame:
        """Every answer in the order given, with `latest` True on the one that counts for its image."""
        with self._connect() as db:
            table = pd.read_sql_query("SELECT * FROM answers ORDER BY id", db)
        table["latest"] = ~table["sha256"].duplicated(keep="last")
        return table

    def reviewed(self) -> set[str]:
        with self._connect() as db:
            return {row[0] for row in db.execute("SELECT DISTINCT sha256 FROM answers")}

    def thumbnail(self, sha256: str) -> bytes | None:
        with self._connect() as db:
            row = db.execute("SELECT png FROM thumbnails WHERE sha256 = ?", (sha256,)).fetchone()
        return row[0] if row else None


def read_answers(path: str | Path) -> pd.DataFrame:
    """Every answer in the database at `path`, as `ReviewStore.answers` gives them, opened read only: nothing is
    created, migrated or written (what `review evaluate` and `review calibrate` read).

    Raises:
        ReviewStoreError: `path` cannot be opened or holds no answers table (the message names it).
    """
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            table = pd.read_sql_query("SELECT * FROM answers ORDER BY id", db)
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise ReviewStoreError(f"{path}: not a review database ({exc})") from exc
    if "local_calibration" not in table:  # a database made before answers recorded it: the shipped calibration
        table["local_calibration"] = None
    table["latest"] = ~table["sha256"].duplicated(keep="last")
    return table


def labelled(answers: pd.DataFrame) -> pd.DataFrame:
    """Answers with the reviewer's label spelled out: `label` (normal / bacterial / viral, or the model's own call
    for "agree", as the page showed it: the likelier of bacterial and viral for a PNEUMONIA call; empty for "not
    readable") and `label_binary` (NORMAL / PNEUMONIA)."""
    out = answers.copy()
    probs = out[TERNARY_COLUMNS].astype("float64")
    complete = probs.notna().all(axis=1)  # rows stored without a ternary model have none: no ternary call
    ternary_call = pd.Series("", index=out.index, dtype=object)
    if complete.any():
        ternary_call[complete] = np.where(
            probs.loc[complete, "p_viral"] > probs.loc[complete, "p_bacterial"], "viral", "bacterial"
        )
    model_label = np.where(
        out["decision"] == "NORMAL",
        "normal",
        np.where(ternary_call.isin(["bacterial", "viral"]), ternary_call, "pneumonia"),
    )
    out["label"] = np.where(
        out["answer"] == "agree", model_label, np.where(out["answer"] == "not readable", "", out["answer"])
    )
    out["label_binary"] = np.where(out["label"] == "", "", np.where(out["label"] == "normal", "NORMAL", "PNEUMONIA"))
    return out


def neutralise_formulas(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of `table` whose text cells starting with = + - @ tab or CR get a leading single quote (OWASP's
    defence against CSV injection), so a spreadsheet shows them as text instead of running them."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v
            )
    return out


def export_csv(store: ReviewStore, out: str | Path) -> Path:
    """All answers as a labelled CSV (one row per answer, `latest` marking the one that counts), text cells
    neutralised against formula injection and quoted (a CR in a note cannot end a row), written to a temporary file
    and renamed over `out`."""
    table = neutralise_formulas(labelled(store.answers()))
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, quoting=csv.QUOTE_NONNUMERIC)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, out)
    return out


def agreement(answers: pd.DataFrame) -> dict:
    """How far reviewers agree with the model, on the latest readable answer per image: counts, the confusion table
    (model decision by reviewer label, normal vs pneumonia) and Cohen's kappa."""
    from sklearn.metrics import cohen_kappa_score

    latest = labelled(answers)
    latest = latest[latest["latest"]]
    readable = latest[latest["label_binary"] != ""]
    confusion = pd.crosstab(readable["decision"].rename("model"), readable["label_binary"].rename("reviewer"))
    confusion = confusion.reindex(index=["NORMAL", "PNEUMONIA"], columns=["NORMAL", "PNEUMONIA"], fill_value=0)
    kappa = float(cohen_kappa_score(readable["decision"], readable["label_binary"])) if len(readable) else None
    kappa = None if kappa is None or kappa != kappa else kappa  # undefined when neither side varies
    disagree = readable[readable["decision"] != readable["label_binary"]]
    return {
        "images reviewed": int(len(latest)),
        "answers": int(len(answers)),
        "not readable": int((latest["label_binary"] == "").sum()),
        "agree": int((readable["decision"] == readable["label_binary"]).sum()),
        "kappa": kappa,
        "confusion": confusion,
        "disagreements": disagree,
    }

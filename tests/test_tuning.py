"""The keras-tuner search: its space offers exactly the configured widths, and it runs distributed (chief + worker)."""

import os

import keras
import keras_tuner as kt
import pytest

from pneumonia_cxr.tuning import cnn_hypermodel


def _conv_filters(model):
    return [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_search_space_offers_only_the_configured_widths():
    hp = kt.HyperParameters()
    model = cnn_hypermodel(32, None, base_filters=(8, 16))(hp)
    widths = [s["config"]["values"] for s in hp.get_config()["space"] if s["config"]["name"] == "base_filters"]
    assert widths == [[8, 16]]
    assert _conv_filters(model) == [8 * 2**i for i in range(hp.get("blocks"))]


def test_widths_double_per_block_and_stop_at_128():
    hp = kt.HyperParameters()
    hp.Fixed("blocks", 5)
    hp.Fixed("base_filters", 32)
    assert _conv_filters(cnn_hypermodel(32, None, base_filters=(32,))(hp)) == [32, 64, 128, 128, 128]


@pytest.mark.parametrize("bad", [(), (0, 16)])
def test_empty_or_non_positive_widths_are_refused(bad):
    with pytest.raises(ValueError, match="base_filters"):
        cnn_hypermodel(32, None, base_filters=bad)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_search_a_chief_and_a_worker_on_localhost(demo_root, tmp_path):
    """keras-tuner's distributed mode with notebook 06's search: the chief serves the oracle, the worker trains the
    trials; both exit cleanly and the chief holds every trial, completed, with a score."""
    import json
    import os
    import subprocess
    import sys

    port = str(_free_port())
    args = [sys.executable, "-m", "pneumonia_cxr.tuning", "--profile", "smoke", "--data-dir", str(demo_root)]
    args += ["--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "reports")]
    args += ["--models-dir", str(tmp_path / "models"), "--seed", "3", "--max-trials", "2"]
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    chief = subprocess.Popen(
        args, env={**env, "KERASTUNER_TUNER_ID": "chief"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    worker = subprocess.Popen(
        args, env={**env, "KERASTUNER_TUNER_ID": "tuner0"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        w_out, w_err = worker.communicate(timeout=600)
        c_out, c_err = chief.communicate(timeout=120)
    finally:
        for proc in (chief, worker):
            if proc.poll() is None:
                proc.kill()
    assert worker.returncode == 0, w_err[-3000:]
    assert chief.returncode == 0, c_err[-3000:]
    worker_said = json.loads(w_out.strip().splitlines()[-1])
    chief_said = json.loads(c_out.strip().splitlines()[-1])
    assert worker_said == {"tuner_id": "tuner0", "done": True}
    trials = chief_said["trials"]
    assert chief_said["tuner_id"] == "chief" and len(trials) == 2
    assert all(t["status"] == "COMPLETED" and 0 <= t["val_auc"] <= 1 for t in trials)
    assert (tmp_path / "models" / "tuner" / "tuner0").is_dir()  # the worker's own checkpoints, apart from the chief


def test_without_an_oracle_address_the_worker_command_refuses(capsys):
    from pneumonia_cxr.tuning import main

    env = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("KERASTUNER_")}
    try:
        with pytest.raises(SystemExit):
            main(["--data-dir", "x"])
    finally:
        os.environ.update(env)
    assert "KERASTUNER_ORACLE_IP" in capsys.readouterr().err

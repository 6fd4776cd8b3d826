"""The keras-tuner search space offers exactly the configured widths."""

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

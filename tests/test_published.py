"""The official-test anchors: one source for the published numbers, and the README line drawn from them."""

from pneumonia_cxr.evaluate import PUBLISHED
from pneumonia_cxr.published import anchors_sentence, official_test_anchors


def test_anchors_take_kermany_from_the_one_published_dict_and_flag_it_alone_as_chosen_on_test():
    t = official_test_anchors()
    kermany = t[t["source"].str.startswith("Kermany")].iloc[0]
    pub = PUBLISHED["Kermany et al. 2018 (binary)"]
    assert kermany["official test AUC"] == pub["roc_auc"] and kermany["specificity"] == pub["specificity"]
    assert (t["chosen on test"] == "yes").tolist() == [s.startswith("Kermany") for s in t["source"]]
    ours = t[t["hold-out AUC"].notna()]
    assert len(ours) == 2 and (ours["hold-out AUC"] > ours["official test AUC"]).all()  # the shift, in two numbers


def test_anchors_sentence_quotes_the_table():
    t = official_test_anchors()
    honest = t[(t["chosen on test"] != "yes") & t["hold-out AUC"].isna()]
    s = anchors_sentence()
    assert f"AUC {honest['official test AUC'].min():.3f}-{honest['official test AUC'].max():.3f}" in s
    for _, r in t[t["hold-out AUC"].notna()].iterrows():
        assert (
            f"{r['hold-out AUC']:.3f}" in s and f"{r['official test AUC']:.3f}" in s and f"{r['specificity']:.2f}" in s
        )
    assert "Kermany" not in s  # the README's table has its own row for the one result chosen on test

"""The network (method.md §2): its size against the paper's."""


from case_fast.config.loading import load_config
from case_fast.method.model import CaseModel, count_macs, count_parameters


def test_model_size_matches_paper():
    cfg = load_config("thumos14")
    m = CaseModel(cfg.model)
    assert count_parameters(m) == 2_137_130
    assert count_parameters(m.rgb) == 1_068_565
    assert count_macs(m, 1) == 2_135_040
    assert count_macs(m, 750) == 1_601_280_000

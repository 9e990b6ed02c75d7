"""The published learning curves: one panel per stage that has runs, plain percentages on the log axis (issue #26 §3).

The drawing needs matplotlib (an optional extra CI does not install); what it draws is decided by these functions."""

from experiments import report


def lines(stage, errors):
    return [{"stage": stage, "epoch": epoch, "val_error": error} for epoch, error in enumerate(errors, 1)]


def test_only_the_stages_with_runs_get_a_panel():
    bitwise_run = lines("compressed", [0.05, 0.03]) + lines("bitwise", [0.04, 0.02])
    assert report.panels({"a": bitwise_run, "b": bitwise_run}) == ["compressed", "bitwise"]
    assert report.panels({"a": bitwise_run, "f": lines("float", [0.03])}) == ["float", "compressed", "bitwise"]
    assert report.panels({"f": lines("float", [0.03]) + lines("compressed", [None])}) == ["float"]  # no validation: no panel


def test_a_sweep_without_validation_draws_its_training_error():
    final_fit = [{"stage": stage, "epoch": 1, "val_error": None, "train_error": 0.01} for stage in ("compressed", "bitwise")]
    assert report.curve_metric({"a": final_fit}) == "train_error"
    assert report.panels({"a": final_fit}, "train_error") == ["compressed", "bitwise"]
    assert report.curve_metric({"a": final_fit, "b": lines("bitwise", [0.02])}) == "val_error"


def test_log_axis_ticks_read_as_plain_percentages():
    assert [report.percent_label(value) for value in (1, 2, 6, 0.5, 10, 1.5)] == ["1 %", "2 %", "6 %", "0.5 %", "10 %", "1.5 %"]
    assert [report.minor_percent_label(value) for value in (2, 3, 5, 7, 20, 50, 0.2, 0.3)] == ["2 %", "", "5 %", "", "20 %", "50 %", "0.2 %", ""]


def test_a_run_published_from_other_hardware_gets_a_plain_file_name():
    index = {"sweep/run": {"hardware": "cpu: AMD EPYC, AVX2"}}
    assert report.registry_key(index, "sweep", "run", "cpu: AMD EPYC, AVX2") == "sweep/run"
    assert report.registry_key(index, "sweep", "run", "cpu: AMD EPYC, AVX-512") == "sweep/run@AMD_EPYC_AVX-512"
    assert report.registry_key(index, "sweep", "run", "gpu: NVIDIA H100 80GB HBM3") == "sweep/run@NVIDIA_H100_80GB_HBM3"

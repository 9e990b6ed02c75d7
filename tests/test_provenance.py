"""Provenance: code, versions and hardware recorded per run segment, and read back for pooling."""

import json
import os

import jax
import pytest

from bitnet.workdir import preemption, provenance
from bitnet.training import configuration, plan
from configs import smoke


def _workdir(tmp_path) -> str:
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    configuration.write_or_check(plan.resolve(smoke.get_config()), workdir)
    return workdir


def test_code_version_inside_and_outside_a_checkout(tmp_path):
    inside = provenance.code_version()
    assert len(inside["commit"]) == 40 and int(inside["commit"], 16) >= 0
    assert isinstance(inside["dirty"], bool)
    assert provenance.code_version(str(tmp_path)) == {"commit": "unknown", "dirty": "unknown"}


def test_environment_names_versions_and_devices():
    environment = provenance.environment()
    assert set(environment["versions"]) == set(provenance.LIBRARIES)
    assert all(version != "unknown" for version in environment["versions"].values())
    devices = environment["devices"]
    assert devices["platform"] == jax.default_backend() and devices["count"] == len(jax.devices()) >= 1
    assert devices["kind"] == (provenance.cpu_kind() if devices["platform"] == "cpu" else jax.devices()[0].device_kind)


def test_a_cpu_kind_names_its_widest_vector_instruction_set():
    """Two CPUs that report one model name but differ in vector unit train to different numbers: separate kinds."""
    assert provenance.vector_isa("fpu sse2 avx avx2 fma avx512f avx512dq avx512_vpopcntdq") == "AVX-512"
    assert provenance.vector_isa("fpu sse2 avx avx2 fma") == "AVX2"
    assert provenance.vector_isa("fp asimd evtstrm sve") == "SVE"  # Arm's Features line
    assert provenance.vector_isa("fp asimd") == "NEON"
    assert provenance.vector_isa("fpu sse2") is None and provenance.vector_isa(None) is None
    kind = provenance.cpu_kind()
    assert kind.startswith(provenance.cpu_model()) and (kind == provenance.cpu_model() or kind.split(", ")[-1] in dict(provenance.VECTOR_ISAS).values())
    avx2 = {"devices": {"platform": "cpu", "kind": "AMD EPYC, AVX2"}, "epochs": 3}
    avx512 = {"devices": {"platform": "cpu", "kind": "AMD EPYC, AVX-512"}, "epochs": 3}
    assert provenance.hardware([avx2, avx512]) == provenance.MIXED  # a run resumed on the other kind is pooled with neither


@pytest.mark.parametrize(
    "raised, status", [(None, "finished"), (preemption.Preempted("x"), "stopped"), (KeyboardInterrupt(), "stopped"), (ValueError("x"), "error")]
)
def test_segment_records_start_end_and_how_it_ended(tmp_path, raised, status):
    workdir = _workdir(tmp_path)
    try:
        with provenance.segment(workdir):
            with open(os.path.join(workdir, "metrics.jsonl"), "a") as file:
                file.write("{}\n{}\n")
            if raised is not None:
                raise raised
    except (preemption.Preempted, KeyboardInterrupt, ValueError):
        pass
    (segment,) = provenance.read_segments(workdir)
    assert segment["status"] == status and segment["epochs"] == 2
    assert segment["start"] <= segment["end"]
    assert segment["code"] == provenance.code_version()
    # the record is not a config field: the same config still fits, and reads back without it
    assert configuration.check_workdir(configuration.config_dict(smoke.get_config()), workdir)
    assert "provenance" not in configuration.read_config(workdir)


def test_segments_accumulate_and_survive_overwrite(tmp_path):
    workdir = _workdir(tmp_path)
    for _ in range(2):
        with provenance.segment(workdir):
            pass
    changed = smoke.get_config()
    changed.stage2.epochs = 5  # stage 1 is kept, so is the history of the run that trained it
    configuration.write_or_check(plan.resolve(changed), workdir, overwrite=True)
    assert len(provenance.read_segments(workdir)) == 2
    (aside,) = os.listdir(os.path.join(workdir, "replaced"))  # the replaced config.json is kept
    with open(os.path.join(workdir, "replaced", aside, "config.json")) as file:
        config = json.load(file)
    assert config["stage2"]["epochs"] == smoke.get_config().stage2.epochs and len(config["provenance"]["segments"]) == 2


def test_hardware_of_segments():
    cpu = {"devices": {"platform": "cpu", "kind": "AMD EPYC"}, "epochs": 3}
    gpu = {"devices": {"platform": "gpu", "kind": "NVIDIA H200"}, "epochs": 1}
    idle_gpu = {**gpu, "epochs": 0}  # a rerun of a finished run trains nothing
    killed_gpu = {**gpu, "epochs": None}  # killed: it may have trained
    assert provenance.hardware([cpu, cpu]) == "cpu: AMD EPYC"
    assert provenance.hardware([cpu, idle_gpu]) == "cpu: AMD EPYC"
    assert provenance.hardware([cpu, killed_gpu]) == provenance.MIXED
    assert provenance.hardware([]) == provenance.UNKNOWN
    assert provenance.commits([{"code": {"commit": "a" * 40, "dirty": True}}, {"code": {"commit": "b" * 40, "dirty": False}}]) == ["aaaaaaa+dirty", "bbbbbbb"]

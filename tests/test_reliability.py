"""Reliability: resume after SIGKILL / SIGTERM, determinism, workdir safety, one-line errors on bad input.

Most tests run the real entry points (`python -m experiments.train` / `experiments.evaluate`) in
subprocesses on a tiny synthetic IDX data set. The subprocesses share a persistent JAX compilation
cache, so only the first one pays for compiling; a cached executable computes exactly what a fresh
compile does, so the comparisons stay bit for bit.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bitnet.deploy import export
from bitnet.errors import ERROR_FILE
from bitnet.workdir import checkpoints, metrics, preemption, provenance, workdir_lock
from bitnet.training import binarized, loop, steps, train
from bitnet.runs import evaluate
from experiments import cli
from tests import bad_inputs, idx_fixtures, tiny
from tests.helpers import (
    REPO,
    STEPS_PER_EPOCH,
    assert_one_line_error,
    assert_same_run,
    assert_trees_equal,
    lines_without_timing,
    run,
    saved_steps,
    signal_when,
    start,
    stored_state,
    train_args,
)

@pytest.mark.slow  # full tier: ./launch.sh test --full
def test_killed_and_preempted_run_resumes_to_the_same_model(env, reference, tmp_path):
    """SIGKILL in stage 1, SIGTERM right after resuming, SIGKILL in stage 2, then the same command to the end."""
    workdir = tmp_path / "interrupted"
    args = train_args(env, workdir)
    logs = [tmp_path / f"run{index}.log" for index in range(3)]

    # 1. SIGKILL in stage 1, as soon as it has a checkpoint
    process = start(env, args, logs[0])
    status, _ = signal_when(process, lambda: saved_steps(workdir, "compressed"), signal.SIGKILL, logs[0])
    assert status == -signal.SIGKILL
    assert not saved_steps(workdir, "bitwise"), "the kill was meant for stage 1"
    good = saved_steps(workdir, "compressed")[-1]

    # a save interrupted mid-write leaves orbax's temporary folder: it must never count as a checkpoint
    fake = Path(workdir, "checkpoints", "compressed", "latest", f"{good + 1000}.orbax-checkpoint-tmp")
    (fake / "state").mkdir(parents=True)
    (fake / "state" / "manifest.ocdbt").write_bytes(b"half a file")
    _, state = stored_state(workdir, "compressed", "latest")
    _, meta = checkpoints.restore_stage(workdir, "compressed", "latest", state)
    assert meta["step"] == good

    # 2. SIGTERM (preemption) as soon as the rerun has resumed: it saves mid-epoch and stops cleanly
    process = start(env, args, logs[1])
    resumed = f"compressed: resumed at step {good} "
    status, stderr = signal_when(process, lambda: resumed in logs[1].read_text(), signal.SIGTERM, logs[1])
    assert status == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    pattern = r"stopped: stopped by SIGTERM in stage (\w+) at step (\d+); checkpoint saved in (\S+); rerun the same command to resume"
    match = re.fullmatch(pattern, last)
    assert match, last
    stage, step = match[1], int(match[2])
    assert step > good and saved_steps(workdir, stage) == [step]  # typically mid-epoch: step % 12 != 0
    assert match[3] == checkpoints.stage_dir(str(workdir), stage, "latest")

    # 3. SIGKILL in stage 2, as soon as it has a checkpoint
    process = start(env, args, logs[2])
    status, stderr = signal_when(process, lambda: saved_steps(workdir, "bitwise"), signal.SIGKILL, logs[2])
    assert status == -signal.SIGKILL
    assert f"{stage}: resumed at step {step} " in stderr
    assert not Path(workdir, "checkpoints", "binarized", "0").exists(), "the kill was meant for stage 2"

    # 4. the same command once more finishes the run, exactly as if nothing had happened
    result = run(env, args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bitwise: resumed at step" in result.stderr
    assert_same_run(workdir, reference)


def test_metric_lines_of_a_killed_run_are_cut_back_to_the_checkpoint(tmp_path):
    """Lines past the checkpoint, and half a line from a kill mid-write, go; the rest stays."""
    lines = [{"stage": stage, "epoch": epoch} for stage in ("compressed", "bitwise") for epoch in (1, 2)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"stage": "bitwise", "ep')
    assert metrics.read_metrics(str(tmp_path)) == lines  # the reader skips the half line
    metrics.MetricWriter(str(tmp_path)).drop_after("bitwise", 1)
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:3]


# ---------------------------------------------------------------------------------------------
# Determinism and workdir safety


def test_same_config_and_seed_give_the_same_metrics_and_model(env, reference, tmp_path):
    result = run(env, train_args(env, tmp_path / "again"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(tmp_path / "again", reference)


def test_workdir_with_another_config_is_refused(env, reference, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(reference, workdir)
    config_before = Path(workdir, "config.json").read_text()

    changed = train_args(env, workdir, "--config.model.hidden_sizes=(48,)", "--config.seed=1")
    assert_one_line_error(run(env, changed), "holds a run with another config", "model.hidden_sizes", "seed", "--overwrite")
    assert Path(workdir, "config.json").read_text() == config_before  # (--overwrite: tests/test_no_silent_results.py)


# ---------------------------------------------------------------------------------------------
# Bad input through the real command line


def test_damaged_latest_checkpoint(env, reference, tmp_path):
    workdir = tmp_path / "damaged"
    shutil.copytree(reference, workdir)
    step = saved_steps(workdir, "bitwise")[-1]
    state = Path(workdir, "checkpoints", "bitwise", "latest", str(step), "state")
    data_files = [path for path in state.rglob("*") if path.is_file() and path.parent.name == "d"]
    assert data_files, f"no OCDBT data file under {state}: {sorted(str(p.relative_to(state)) for p in state.rglob('*'))}"
    for path in data_files:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated, as by a full disk
    result = run(env, train_args(env, workdir))
    assert_one_line_error(result, f"checkpoint {checkpoints.stage_dir(str(workdir), 'bitwise', 'latest')}/{step}", "damaged")


def test_non_finite_loss_names_the_step_and_keeps_the_last_good_checkpoint(env, tmp_path):
    workdir = tmp_path / "diverges"
    float_run = ["--config.run_kind=float", "--config.stage1.optimizer=sgd"]
    stopped = run({**env, "env": {**env["env"], "BITNET_FAULT": "epoch_last_step:term:1"}}, train_args(env, workdir, *float_run))
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    _, good_state = stored_state(workdir, "float", "latest")
    config = json.loads(Path(workdir, "config.json").read_text())
    config["stage1"]["learning_rate"] = 1e30  # the run blows up in its second epoch, after a good checkpoint
    Path(workdir, "config.json").write_text(json.dumps(config))

    result = run(env, train_args(env, workdir, *float_run, "--config.stage1.learning_rate=1e30"))
    last = assert_one_line_error(result, "loss became non-finite at step", "(epoch 2)", "last good checkpoint")
    assert int(re.search(r"at step (\d+)", last)[1]) > STEPS_PER_EPOCH
    assert (workdir / ERROR_FILE).read_text() == f"{last}\n"  # a run alone records its error as a group's runs do
    assert provenance.read_segments(workdir)[-1]["status"] == "error"
    assert saved_steps(workdir, "float") == [STEPS_PER_EPOCH]
    assert_trees_equal(stored_state(workdir, "float", "latest")[1], good_state)
    assert [m["epoch"] for m in lines_without_timing(workdir)] == [1]


# ---------------------------------------------------------------------------------------------
# Bad input in-process: the same `error: ...` path (cli.run_cleanly), without a process per case


def tiny_config(env):
    return tiny.tiny_config(env["source"], env["data_dir"])


def fails_cleanly(capsys, function):
    """Run `function` as the entry points do; return the one `error:` line it printed."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.run_cleanly(function)
    assert exit_info.value.code == 1
    return assert_one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("case", bad_inputs.CONFIG, ids=lambda case: case.id)
def test_bad_config_fails_before_any_work(env, capsys, tmp_path, case):
    config = tiny_config(env)
    holder, _, name = case.field.rpartition(".")
    (config[holder] if holder else config)[name] = case.value
    workdir = tmp_path / "run"
    line = fails_cleanly(capsys, lambda: train.train_and_evaluate(config, str(workdir)))
    assert line == f"error: {case.error}"
    assert not workdir.exists()  # nothing written, not even config.json: fixing the field and rerunning just works


def corrupt_folder(folder, case):
    """Damage one file of a copy of the synthetic IDX folder in the way `case` names."""
    images = folder / "train-images-idx3-ubyte.gz"
    if case == "no folder":
        shutil.rmtree(folder)
    elif case == "missing file":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    elif case == "bad magic":
        images.write_bytes(gzip.compress(b"\x08\x03\x00\x00" + bytes(64)))
    elif case == "truncated":
        raw = idx_fixtures.idx_bytes(np.zeros((300, 28, 28), np.uint8))
        images.write_bytes(raw[: len(raw) - 100])
        images.rename(folder / "train-images-idx3-ubyte")  # an uncompressed file works the same
    elif case == "wrong dimensions":
        idx_fixtures.write_idx(images, np.zeros((300, 784), np.uint8))
    elif case == "count mismatch":
        idx_fixtures.write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(299, np.uint8))


@pytest.mark.parametrize("case", bad_inputs.DATA_FOLDER, ids=lambda case: case.id)
def test_bad_data_folder_fails_before_any_work(env, capsys, tmp_path, case):
    folder = Path(shutil.copytree(env["source"], tmp_path / "idx"))
    corrupt_folder(folder, case.id)
    config = tiny_config(env)
    config.data.source_dir = str(folder)
    config.data.data_dir = str(tmp_path / "tfds")  # not prepared yet: the files are read
    workdir = tmp_path / "run"
    line = fails_cleanly(capsys, lambda: train.train_and_evaluate(config, str(workdir)))
    assert line == f"error: {case.error.format(folder=folder)}"
    assert not workdir.exists()


def test_evaluate_needs_a_trained_workdir(env, reference, capsys, tmp_path):
    line = fails_cleanly(capsys, lambda: evaluate.evaluate_workdir(str(tmp_path)))
    assert "has no config.json" in line
    shutil.copy(Path(reference, "config.json"), tmp_path)
    line = fails_cleanly(capsys, lambda: evaluate.evaluate_workdir(str(tmp_path)))
    assert "no compressed checkpoint in" in line and "train this workdir first" in line


# ---------------------------------------------------------------------------------------------
# Bad .npz models (the format checks themselves are in tests/test_export.py)


def write_model(reference, path, change=None):
    """The reference's binarized model as a bitnet-packed-v1 .npz, after `change(arrays)`."""
    arrays, _ = binarized.load(reference)
    if change is not None:
        change(arrays)
    np.savez(path, **arrays)
    return path


def with_padding_bit(plane):
    """A packed plane with bit 31 of every row's last word set (padding when n_in is not a multiple of 32)."""
    plane = plane.copy()
    plane[:, -1] |= np.uint32(1 << 31)
    return plane


NPZ_DAMAGE = {  # how each case of bad_inputs.NPZ damages a good model
    "format tag": lambda arrays: arrays.update(format=np.array("bitnet-packed-v0")),
    "missing key": lambda arrays: arrays.pop("w1_mask"),
    "wrong shape": lambda arrays: arrays.update(b0=arrays["b0"][:-1]),
    "wrong dtype": lambda arrays: arrays.update(w0_sign=arrays["w0_sign"].astype(np.int64)),
    "bias out of range": lambda arrays: arrays["b0"].__setitem__(0, 5),
    "padding bits": lambda arrays: arrays.update(w0_sign=with_padding_bit(arrays["w0_sign"]), w0_mask=with_padding_bit(arrays["w0_mask"])),
}


@pytest.mark.parametrize("case", bad_inputs.NPZ, ids=lambda case: case.id)
def test_bad_npz_is_one_line(reference, capsys, tmp_path, case):
    path = write_model(reference, tmp_path / "model.npz", NPZ_DAMAGE[case.id])
    line = fails_cleanly(capsys, lambda: export.load_npz(path))
    assert line == f"error: {case.error.format(model=path)}"


def test_evaluate_command_on_an_npz(env, reference, tmp_path):
    """experiments.evaluate --npz: the test error of a model file alone, on the data the flags name."""
    path, workdir = tmp_path / "model.npz", tmp_path / "evaluated"
    shutil.copytree(reference, workdir)  # the shared reference stays unevaluated
    evaluate.evaluate_workdir(str(workdir))
    shutil.copy(Path(workdir, "bitwise.npz"), path)
    data_flags = [f"--source_dir={env['source']}", f"--data_dir={env['data_dir']}", f"--out={tmp_path / 'eval.json'}"]
    result = run(env, [sys.executable, "-m", "experiments.evaluate", f"--npz={path}", *data_flags])
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed == json.loads(Path(tmp_path, "eval.json").read_text())
    assert printed["packed_error"] == json.loads(Path(workdir, "eval.json").read_text())["packed_error"]
    assert printed["num_examples"] == 100
    damaged = write_model(reference, tmp_path / "damaged.npz", NPZ_DAMAGE["format tag"])
    assert_one_line_error(run(env, [sys.executable, "-m", "experiments.evaluate", f"--npz={damaged}", *data_flags]), "format tag")


def test_summary_command_on_a_bad_npz(env, reference, tmp_path):
    path = write_model(reference, tmp_path / "model.npz", NPZ_DAMAGE["format tag"])
    result = run(env, [sys.executable, "-m", "experiments.summary", f"--npz={path}"])
    assert_one_line_error(result, str(path), "format tag is 'bitnet-packed-v0'", "is this a bitnet model?")


# ---------------------------------------------------------------------------------------------
# Found by trying (issue 11, section 7): a busy, full, read-only or mistyped workdir, Ctrl-C,
# missing config files, flags of the wrong type


def test_busy_workdir_is_refused_naming_the_holder(env, reference, capsys, tmp_path):
    workdir = tmp_path / "busy"
    shutil.copytree(reference, workdir)
    before = sorted(str(path.relative_to(workdir)) for path in workdir.rglob("*"))
    with workdir_lock.held(str(workdir)):
        for function in (lambda: train.train_and_evaluate(tiny_config(env), str(workdir)), lambda: evaluate.evaluate_workdir(str(workdir))):
            line = fails_cleanly(capsys, function)
            holder = Path(workdir, "lock").read_text().strip()
            assert holder.startswith(f"pid {os.getpid()} on host ") and " since " in holder, holder
            assert line == f"error: {bad_inputs.CASES['busy'].error.format(workdir=workdir, holder=holder)}"
    after = sorted(str(path.relative_to(workdir)) for path in workdir.rglob("*"))
    assert after == sorted({*before, "lock"})  # the refused runs touched nothing


HOLD_LOCK = "import sys, time; from bitnet.workdir import workdir_lock\nwith workdir_lock.held(sys.argv[1]):\n print('held', flush=True); time.sleep(600)"


def test_second_command_is_refused_and_a_killed_holder_releases_the_lock(env, tmp_path):
    """Through the real command line; the kernel frees the flock of a SIGKILLed holder, so a rerun is never refused."""
    workdir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run(env, train_args(env, workdir))
        assert_one_line_error(result, f"{workdir} is in use by pid {holder.pid} on host ")
        result = run(env, [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}"])
        assert_one_line_error(result, f"{workdir} is in use by pid {holder.pid} on host ")
    finally:
        holder.kill()
        holder.wait()
    with workdir_lock.held(str(workdir)):  # free again at once
        pass


def test_ctrl_c_checkpoints_and_stops_like_sigterm(env, capsys, tmp_path, monkeypatch, request):
    """SIGINT mid-epoch saves the current step and stops with one line and exit status 130 (128 + SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background pytest ignores SIGINT)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    make_train_chunk = steps.make_train_chunk

    def interrupted_at_step_3(*args, **kwargs):
        chunk = make_train_chunk(*args, **kwargs)

        def train_chunk(state, *rest):
            state = chunk(state, *rest)
            if int(state["step"]) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
            return state

        return train_chunk

    monkeypatch.setattr(loop, "CHUNK_SECONDS", 0.0)  # chunks of one step: the signal comes mid-epoch
    monkeypatch.setattr(steps, "make_train_chunk", interrupted_at_step_3)
    workdir = tmp_path / "run"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.run_cleanly(lambda: train.train_and_evaluate(tiny_config(env), str(workdir)))
    assert exit_info.value.code == 130
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"stopped: stopped by SIGINT in stage compressed at step 3; checkpoint saved in "
        f"{checkpoints.stage_dir(str(workdir), 'compressed', 'latest')}; rerun the same command to resume"
    )
    assert saved_steps(workdir, "compressed") == [3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works as usual again


def test_ctrl_c_outside_training_is_one_line(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        cli.run_cleanly(interrupted)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.startswith("stopped: interrupted (SIGINT)")


def test_a_second_ctrl_c_stops_at_once():
    with preemption.stop_on_sigterm():
        os.kill(os.getpid(), signal.SIGINT)
        assert preemption.requested() == "SIGINT" and preemption.exit_status() == 130
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here at the latest


def test_full_disk_while_exporting_is_one_line_and_leaves_no_partial_file(reference, capsys, tmp_path, monkeypatch):
    workdir = tmp_path / "full"
    shutil.copytree(reference, workdir)

    def savez_on_a_full_disk(file, *args, **kwargs):
        Path(file).write_bytes(b"the first bytes of a model")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))

    monkeypatch.setattr(np, "savez_compressed", savez_on_a_full_disk)  # bitnet.deploy.export writes with it
    line = fails_cleanly(capsys, lambda: evaluate.evaluate_workdir(str(workdir)))
    assert line.startswith(f"error: no space left on the disk writing {workdir}/bitwise.npz.tmp.npz (disk mounted at /"), line
    assert "free space there and rerun the same command" in line
    assert not list(workdir.glob("*.tmp*")) and not Path(workdir, "bitwise.npz").exists()


def test_taking_the_lock_removes_what_interrupted_writes_left(tmp_path):
    kept = [tmp_path / "config.json", tmp_path / "checkpoints" / "bitwise" / "latest" / "12" / "state" / "x"]
    left = [tmp_path / "eval.json.tmp", tmp_path / "bitwise.npz.tmp.npz",
            tmp_path / "checkpoints" / "bitwise" / "latest" / "24.orbax-checkpoint-tmp-3" / "state" / "x"]  # fmt: skip
    for path in kept + left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    with workdir_lock.held(str(tmp_path)):
        assert all(path.exists() for path in kept) and not any(path.exists() for path in left)
        assert not Path(tmp_path, "checkpoints", "bitwise", "latest", "24.orbax-checkpoint-tmp-3").exists()


def test_disk_errors_wrapped_by_a_library_are_found():
    """orbax re-raises the OSError of its writer thread inside its own exception."""
    try:
        try:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/somewhere/checkpoints/x")
        except OSError as error:
            raise ValueError("async save failed") from error
    except ValueError as wrapped:
        assert workdir_lock.disk_error(wrapped).startswith("the file system is read-only writing /somewhere/checkpoints/x")
    orbax_full = ValueError(  # what orbax raised on a full 3 MB tmpfs (message shortened)
        'RESOURCE_EXHAUSTED: Error writing "opt_state.0.mu.dense0.bias/0" in OCDBT database at local file '
        '"/w/checkpoints/compressed/best/100.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed writing: '
        '"/w/checkpoints/compressed/best/100.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/d/bc": '
        "Failed to write 2809856 bytes to file 8: No space left on device [os_error_code='28']"
    )
    assert workdir_lock.disk_error(orbax_full) == (
        "no space left on the disk writing /w/checkpoints/compressed/best/100 (disk mounted at /); free space there and rerun the same command"
    )
    assert workdir_lock.disk_error(ValueError("unrelated")) is None
    assert workdir_lock.disk_error(OSError(errno.ENOENT, "no such file")) is None  # not a disk problem: a traceback


@pytest.fixture
def read_only(monkeypatch):
    """Make folders read-only by their mode bits, as for a normal user (root ignores them, so emulate access())."""
    made = []

    def make(folder):
        folder.chmod(0o555)
        made.append(folder)

    if os.geteuid() == 0:
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode: real_access(path, mode) and not (mode & os.W_OK and not os.stat(path).st_mode & 0o200)
        )
    yield make
    for folder in made:
        folder.chmod(0o755)


def test_read_only_workdir_is_one_line(env, reference, capsys, tmp_path, read_only):
    """Evaluate, resume and --overwrite in a read-only workdir: one line, nothing changed."""
    workdir = tmp_path / "read-only"
    shutil.copytree(reference, workdir)
    read_only(workdir)
    config = tiny_config(env)
    for function in (
        lambda: evaluate.evaluate_workdir(str(workdir)),
        lambda: train.train_and_evaluate(config, str(workdir)),
        lambda: train.train_and_evaluate(config, str(workdir), overwrite=True),
    ):
        line = fails_cleanly(capsys, function)
        assert line == f"error: {bad_inputs.CASES['read-only'].error.format(workdir=workdir)}"
    assert not Path(workdir, "eval.json").exists() and not Path(workdir, "replaced").exists()


def test_workdir_that_is_a_file_is_one_line(env, capsys, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a workdir")
    for function in (lambda: train.train_and_evaluate(tiny_config(env), str(path)), lambda: evaluate.evaluate_workdir(str(path))):
        line = fails_cleanly(capsys, function)
        assert line == f"error: {bad_inputs.CASES['a file'].error.format(workdir=path)}"
    assert path.read_text() == "not a workdir"


@pytest.mark.parametrize("case", bad_inputs.COMMAND_LINE, ids=lambda case: case.id)
def test_bad_command_line_is_one_line(env, tmp_path, case):
    workdir = tmp_path / "W"
    args = [sys.executable, *[f"--workdir={workdir}" if arg == "--workdir=W" else arg for arg in case.given.split()[1:]]]
    result = run(env, args, timeout=120)
    assert result.returncode == 1 and "FATAL" not in result.stderr
    assert assert_one_line_error(result) == f"error: {case.error}"
    assert not workdir.exists()


def test_report_without_matplotlib_names_the_install(capsys, monkeypatch):
    from experiments import report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plots extra were not installed
    with pytest.raises(SystemExit) as exit_info:
        report.require_matplotlib()
    assert exit_info.value.code == 1
    assert assert_one_line_error(capsys.readouterr().err, 'pip install -e ".[plots]"')


def test_a_sigint_after_a_sigterm_still_saves_and_two_ctrl_c_stop_at_once():
    """A launcher passes Ctrl-C on as SIGTERM; the child's own SIGINT may come second: that is one stop, not two."""
    with preemption.stop_on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert preemption.requested() == "SIGTERM"
    with preemption.stop_on_sigterm():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)

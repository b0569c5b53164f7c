"""The training progress bar shows the loss and a few chosen metrics, not every logged one."""

from matpac_keras.training.callbacks import PROGRESS_METRICS, TrainingProgress

LOGS = {
    "loss": 1.25,
    "loss_cls": 2.5,
    "loss_pred": 0.125,
    "lr": 0.0003,
    "teacher_temp": 0.04,
    "grad_norm": 7.5,
    "teacher_perplexity": 900.0,
}


def _one_epoch(capsys, verbose: int, steps: int = 2, **kwargs) -> str:
    """What the bar prints for one epoch of `steps` batches, each logging LOGS."""
    progress = TrainingProgress(**kwargs)
    progress.set_params({"verbose": verbose, "epochs": 1, "steps": steps})
    progress.on_train_begin()
    progress.on_epoch_begin(0)
    for batch in range(steps):
        progress.on_train_batch_end(batch, dict(LOGS))
    progress.on_epoch_end(0, dict(LOGS))
    return capsys.readouterr().out


def test_progress_bar_shows_only_the_chosen_metrics(capsys):
    shown = _one_epoch(capsys, verbose=1)
    assert PROGRESS_METRICS == ("loss", "loss_cls", "loss_pred", "lr")
    for name in PROGRESS_METRICS:
        assert f"{name}: " in shown, shown
    for name in ("teacher_temp", "grad_norm", "teacher_perplexity"):
        assert name not in shown, shown
    assert "2/2" in shown


def test_quiet_run_prints_nothing(capsys):
    assert _one_epoch(capsys, verbose=0) == ""


def test_output_that_is_no_terminal_gets_a_line_every_few_steps(capsys):
    out = _one_epoch(capsys, verbose=1, steps=7, every=3, interactive=False)
    lines = out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["3/7", "6/7", "7/7"]
    assert "\r" not in out and "\x1b" not in out  # no in-place updates, no colours
    assert lines[0].endswith("loss: 1.25 - loss_cls: 2.5 - loss_pred: 0.125 - lr: 0.0003")
    assert lines[0].split(" - ")[1].endswith(" s/step")
    assert _one_epoch(capsys, verbose=0, steps=7, every=3, interactive=False) == ""


def test_a_terminal_keeps_the_bar(capsys):
    out = _one_epoch(capsys, verbose=1, steps=7, every=3, interactive=True)
    assert "7/7" in out and "\x1b" in out  # Keras's bar (colours), not plain lines

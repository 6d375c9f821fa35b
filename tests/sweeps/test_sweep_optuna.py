"""``hparams_search=optuna``: rnnlab's Optuna sweeper (persistent, resumable, pruning, shared).

In-process tests cover the search-space grammar, the per-trial seeding, storages, the trial
reporter and the trainer's eval hook. The command-line tests run tiny studies (8 units, a few
dozen steps) on fresh stores: one study run twice (resume), with a threshold pruner whose
verdict does not depend on other trials, so that a trial with a useless learning rate is pruned
and one with a good learning rate is not; and two sweeper processes on one study at once.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from framework import ROOT
from framework.errors import ConfigError, TrackingError
from tests.conftest import needs_data, require_data
from tests.helpers import run_cli, sqlite_store
from tests.sweeps.test_sweep import client_for

optuna = pytest.importorskip("optuna")

TINY = ["train.steps=40", "train.eval_every=10", "cell.hidden_size=8", "train.batch_size=8",
        "train.sample_every=0", "train.checkpoint_every=0", "mlflow.log_model=false",
        "hydra.job_logging.root.level=WARNING"]
# lr 0.05 is below ln(27) = 3.30 nats/char by step 20 with either cell; lr 1e-6 is not: only it
# is pruned. (A config group in the space too: each trial overrides cell=rnn or cell=gru.)
THRESHOLD = ["hydra/sweeper/pruner=none", "hydra.sweeper.pruner.name=threshold",
             "+hydra.sweeper.pruner.upper=3.25", "+hydra.sweeper.pruner.n_warmup_steps=20",
             "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=7",
             "hydra.sweeper.params=null", "optimizer.lr=choice(0.05,0.000001)",
             "cell=choice(rnn,gru)"]


def study_cli(cwd: Path, args: list[str], *, wait: bool = True, timeout: float = 400,
              in_process: bool = False):
    """An Optuna study from the command line: a process (started, or waited for), or run in this
    process when the process is not the point (the trials run in it one after the other)."""
    if in_process:
        proc = run_cli("framework", ["-m", "hparams_search=optuna", *TINY,
                                     f"mlflow.tracking_uri=sqlite:///{cwd / 'mlflow.db'}", *args],
                       cwd)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    env.setdefault("RNNLAB_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    cmd = [sys.executable, "-m", "framework", "-m", "hparams_search=optuna", *TINY,
           f"mlflow.tracking_uri=sqlite:///{cwd / 'mlflow.db'}", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def load(cwd: Path, name: str = "rnnlab"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'optuna.db'}")


def trial_runs(runs) -> dict:
    """Trial number -> MLflow run, for the runs of Optuna trials (tag rnnlab.optuna_trial:
    optuna.* is the sweeper's bookkeeping, not a param of the trial)."""
    assert not any("optuna.trial" in r.data.params for r in runs)
    return {int(r.data.tags["rnnlab.optuna_trial"]): r for r in runs
            if "rnnlab.optuna_trial" in r.data.tags}


def results_of(sweep_dir: Path) -> dict:
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


# ------------------------------------------------------------------------------ search space
def test_search_space_grammar_becomes_optuna_distributions():
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    from framework.sweeps.optuna_space import parse_search_space

    space, fixed = parse_search_space([
        "optimizer.lr=tag(log, interval(1e-4, 1e-1))", "cell.hidden_size=choice(16, 32)",
        "train.batch_size=range(8, 33, 8)", "clip.max_norm=interval(1.0, 10.0)",
        "model.num_layers=interval(1, 3)", "train.steps=300", "train.steps=200",
        "cell=choice(rnn,gru)"])
    assert space == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "cell.hidden_size": CategoricalDistribution([16, 32]),
        "train.batch_size": IntDistribution(8, 32, step=8),  # Hydra's stop is exclusive
        "clip.max_norm": FloatDistribution(1.0, 10.0),
        "model.num_layers": FloatDistribution(1.0, 3.0),  # Hydra's intervals are floats
        "cell": CategoricalDistribution(["rnn", "gru"]),
    }
    assert fixed == ["train.steps=200"]  # the later override wins


@pytest.mark.parametrize("override, message", [
    ("x=glob(*)", "understands choice(), range(), interval()"),
    ("x=tag(log, interval(0, 1))", "log interval needs a low end above 0"),
    ("x=interval(2, 1)", "low end must be below"),
    ("x=choice(a,", "search space 'x=choice(a,': no viable alternative"),
])
def test_bad_search_space_is_one_line_config_error(override, message):
    from framework.sweeps.optuna_space import parse_search_space

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_search_space([override])
    assert "\n" not in str(e.value)


def test_trial_params_become_overrides_hydra_reads_back_as_the_same_values():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from framework.sweeps.optuna_space import trial_overrides

    params = {"a": "rnn", "b": "1", "c": "x y", "d": None, "e": True, "f": 0.1, "g": 3,
              "h": "it's", "i": "null"}
    parsed = OverridesParser.create().parse_overrides(trial_overrides(params))
    assert {o.key_or_group: o.value() for o in parsed} == params


# -------------------------------------------------------------------------------- samplers
def _draws(study, n: int, sampler_spec: dict) -> list[float]:
    from framework.sweeps.optuna_sweeper import make_sampler

    study.sampler = make_sampler(sampler_spec)
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    out = []
    for _ in range(n):
        trial = study.ask(space)
        out.append(trial.params["x"])
        study.tell(trial, trial.params["x"])
    return out


@pytest.mark.parametrize("target", ["RandomSampler", "TPESampler"])
def test_seeded_sampler_draws_follow_from_seed_and_trial_number(target):
    spec = {"_target_": f"optuna.samplers.{target}", "seed": 5}
    if target == "TPESampler":
        spec["n_startup_trials"] = 2
    one_go = _draws(optuna.create_study(), 4, spec)
    # The same study in two invocations (a resume): a new sampler with the same seed goes on
    # where the first stopped instead of repeating its first draws.
    resumed = optuna.create_study()
    two_goes = _draws(resumed, 2, spec) + _draws(resumed, 2, spec)
    assert two_goes == one_go
    assert len(set(one_go)) == 4
    other_seed = _draws(optuna.create_study(), 4, {**spec, "seed": 6})
    assert other_seed != one_go


# -------------------------------------------------------------------------------- storages
def test_storage_specs_and_default_location(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from framework.sweeps.optuna_sweeper import default_storage
    from framework.sweeps.optuna_trial import absolute_storage, open_storage

    monkeypatch.chdir(tmp_path)
    assert absolute_storage("sqlite:///o.db") == f"sqlite:///{tmp_path / 'o.db'}"
    assert absolute_storage("journal:j.log") == f"journal:{tmp_path / 'j.log'}"
    assert absolute_storage("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    cfg = OmegaConf.create({"mlflow": {"enabled": True,
                                       "tracking_uri": f"sqlite:///{tmp_path}/store/mlflow.db"}})
    assert default_storage(cfg) == f"sqlite:///{tmp_path}/store/optuna.db"
    cfg.mlflow.tracking_uri = "http://127.0.0.1:5000"
    assert default_storage(cfg) == f"sqlite:///{tmp_path}/optuna.db"
    # A journal file shared by two storage objects (two processes' view of one study).
    first = optuna.create_study(storage=open_storage("journal:j.log"), study_name="s")
    trial = first.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    first.tell(trial, 1.5)
    second = optuna.load_study(storage=open_storage("journal:j.log"), study_name="s")
    assert [t.value for t in second.trials] == [1.5]


@pytest.mark.parametrize("spec, message", [
    ("sqlite:////no/such/dir/o.db", "directory /no/such/dir does not exist"),
    ("journal:/no/such/dir/o.log", "directory /no/such/dir does not exist"),
    ("optuna.db", "neither a database URL"),
    ("postgresql+psycopg2://rnnlab:s3cret@127.0.0.1:1/optuna", "cannot be opened"),
])
def test_bad_storage_is_one_line_tracking_error_without_the_password(spec, message):
    from framework.sweeps.optuna_trial import open_storage

    with pytest.raises(TrackingError, match=message) as e:
        open_storage(spec)
    assert "\n" not in str(e.value) and "s3cret" not in str(e.value)


# ---------------------------------------------------------------------------- the job's trial
def _section(storage: str, number: int, **extra) -> dict:
    return {"storage": storage, "study_name": "s", "trial": number,
            "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 10},
            "objective": "val_loss", **extra}


def test_reporter_reports_every_eval_and_the_median_pruner_stops_a_bad_trial(tmp_path):
    from framework.sweeps.optuna_trial import PrunedValue, open_trial

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    for base in (1.0, 1.2):  # two completed trials: 1.0, 0.9, 0.8 ... at steps 0, 10, 20
        trial = study.ask()
        reporter = open_trial(_section(storage, trial.number))
        assert not any(reporter.report(s, base - s / 100) for s in (0, 10, 20))
        study.tell(trial, base - 0.2)
    trial = study.ask()
    reporter = open_trial(_section(storage, trial.number))
    assert reporter.on_eval(0, {"val_loss": 9.0}) is False  # warm-up
    assert reporter.on_eval(10, {"val_loss": 9.0}) is True
    assert study.trials[2].intermediate_values == {0: 9.0, 10: 9.0}
    value = reporter.pruned(10)
    assert isinstance(value, PrunedValue) and value == 9.0 and value.step == 10
    again = pickle.loads(pickle.dumps(value))  # launchers pickle job returns
    assert isinstance(again, PrunedValue) and again.step == 10 and again == 9.0


def test_every_task_owns_its_objectives_and_their_directions():
    from framework.registry import TASKS

    classify, forecast, lm = (TASKS.get(n) for n in ("classify", "forecast", "lm"))
    assert classify.objective_direction("val_accuracy") == "maximize"
    assert classify.objective_direction("best_val_macro_f1") == "maximize"
    assert classify.objective_direction("val_loss") == "minimize"
    assert forecast.objective_direction("best_val_rmse") == "minimize"
    assert lm.objective_direction("val_bits_per_char") == "minimize"
    with pytest.raises(ConfigError, match="'val_accuracy' is not a metric task 'lm' reports"):
        lm.objective_direction("val_accuracy")
    with pytest.raises(ConfigError, match="choose one of val_loss, val_rmse"):
        forecast.objective_direction("best_val_accuracy")


@pytest.mark.parametrize("overrides, message", [
    (["optuna.objective=val_accuracy"], "optuna.objective: 'val_accuracy' is not a metric "
                                        "task 'lm'"),
    (["task=classify", "dataset=names", "optuna.objective=val_rmse"], "is not a metric task"),
    (["optuna.objective="], "optuna.objective must name a metric"),
])
def test_a_job_refuses_an_objective_its_task_does_not_report(overrides, message):
    from tests.helpers import run_config

    with pytest.raises(ConfigError, match=message):
        run_config(overrides)
    assert run_config(["task=classify", "dataset=names", "optuna.objective=best_val_accuracy"])


def test_the_study_direction_must_be_the_objective_s():
    from omegaconf import OmegaConf

    from framework.sweeps.optuna_sweeper import check_objective

    config = OmegaConf.create({"task": {"name": "classify"},
                               "optuna": {"objective": "val_accuracy"}})
    check_objective(config, "maximize")
    with pytest.raises(ConfigError, match="better higher, but hydra.sweeper.direction=minimize; "
                                          "set hydra.sweeper.direction=maximize"):
        check_objective(config, "minimize")
    config.optuna.objective = "val_loss"
    with pytest.raises(ConfigError, match="set hydra.sweeper.direction=minimize"):
        check_objective(config, "maximize")
    check_objective(OmegaConf.create({"task": {"name": "lm"}}), "minimize")  # the default


def test_a_best_objective_keeps_the_best_eval_in_its_direction(tmp_path):
    from framework.registry import TASKS
    from framework.sweeps.optuna_trial import open_trial

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    trial = study.ask()
    section = {**_section(storage, trial.number), "pruner": None,
               "objective": "best_val_accuracy"}
    reporter = open_trial(section, TASKS.get("classify"))
    for step, acc in ((0, 0.5), (10, 0.7), (20, 0.6)):
        reporter.on_eval(step, {"val_loss": 1.0, "val_accuracy": acc})
    assert study.trials[0].intermediate_values == {0: 0.5, 10: 0.7, 20: 0.7}
    assert reporter.last_value == 0.7
    with pytest.raises(ConfigError, match="did not compute val_accuracy"):
        reporter.on_eval(30, {"val_loss": 1.0})


def test_open_trial_refuses_what_the_sweeper_did_not_set_up(tmp_path):
    from framework.sweeps.optuna_trial import open_trial

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    assert open_trial({"trial": None}) is None  # not part of a study
    study = optuna.create_study(storage=storage, study_name="s")
    with pytest.raises(TrackingError, match="has no trial 0"):
        open_trial(_section(storage, 0))
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(TrackingError, match="already COMPLETE"):
        open_trial(_section(storage, 0))
    with pytest.raises(TrackingError, match="no Optuna study 'x'"):
        open_trial({**_section(storage, 0), "study_name": "x"})
    with pytest.raises(ConfigError, match="optuna.storage or optuna.study_name"):
        open_trial({"trial": 0})
    with pytest.raises(ConfigError, match="unknown pruner 'mediam'"):
        open_trial({**_section(storage, 0), "pruner": {"name": "mediam"}})


def test_sweeper_options_are_checked_before_any_study_opens():
    from framework.sweeps.optuna_sweeper import SweeperOptions

    good = {"sampler": {"_target_": "optuna.samplers.RandomSampler"}}
    assert SweeperOptions.from_config({**good, "n_jobs": 2}).n_jobs == 2
    for bad, message in [({"direction": "down"}, "minimize or maximize"),
                         ({"n_jobs": 0}, "n_jobs must be an integer >= 1"),
                         ({"n_trials": "x"}, "n_trials must be an integer"),
                         ({"max_failure_rate": 0.1}, "has no option 'max_failure_rate'"),
                         ({"sampler": {}}, "needs a _target_")]:
        with pytest.raises(ConfigError, match=message):
            SweeperOptions.from_config({**good, **bad})


def test_a_pruner_given_by_name_gets_rnnlab_defaults():
    from omegaconf import OmegaConf

    from framework.sweeps.optuna_sweeper import pruner_by_name

    config = OmegaConf.create({"train": {"eval_every": 25}, "hydra": {"sweeper": {"pruner": "x"}}})
    assert pruner_by_name("median", config) == {
        "name": "median", "n_startup_trials": 5, "n_warmup_steps": 25, "interval_steps": 1,
        "n_min_trials": 1}
    assert pruner_by_name("successive_halving", config)["min_resource"] == 25
    assert pruner_by_name("threshold", config) == {"name": "threshold"}
    with pytest.raises(ConfigError, match="unknown pruner 'mediam'"):
        pruner_by_name("mediam", config)


@needs_data("dinos.txt")
def test_trainer_eval_hook_stops_the_run_with_a_checkpoint(tmp_path):
    from framework.training.trainer import Pruned
    from tests.training.test_trainer import make_trainer

    seen = []

    def hook(step, metrics):
        seen.append((step, sorted(metrics)))
        return step >= 6

    trainer = make_trainer(["train.checkpoint_every=0"], tmp_path / "pruned")
    trainer.eval_hook = hook
    with pytest.raises(Pruned) as exc:
        trainer.run()
    assert exc.value.step == 6 and trainer.step == 7
    assert exc.value.checkpoint.is_file()
    keys = ["val_bits_per_char", "val_loss"]  # the eval's metrics (the trial keeps any best)
    assert seen == [(0, keys), (6, keys)]
    # At the last eval there is nothing left to stop: the hook is told, the run finishes.
    trainer = make_trainer(["train.steps=6", "train.eval_every=0"], tmp_path / "last")
    trainer.eval_hook = lambda step, metrics: True
    assert trainer.run().steps == 6


def test_plugin_is_registered_for_hydra():
    from hydra.core.plugins import Plugins

    from framework.sweeps.optuna_sweeper import register_plugin

    register_plugin()
    cls = Plugins.instance().class_name_to_class[
        "hydra_plugins.rnnlab_optuna_sweeper.RnnlabOptunaSweeper"]
    assert cls.__module__ == "hydra_plugins.rnnlab_optuna_sweeper"
    # Hydra imports every plugin at every start-up: this one must not pull Optuna in.
    probe = "import sys, hydra_plugins.rnnlab_optuna_sweeper; print('optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_credentials_in_logged_urls_are_masked():
    from framework.tracking.tracker import redact_url

    assert redact_url("postgresql+psycopg2://optuna:s3cr@t@db:5432/o") == \
        "postgresql+psycopg2://optuna:***@db:5432/o"
    assert redact_url("postgresql+psycopg2://optuna@db/o") == "postgresql+psycopg2://optuna@db/o"
    assert redact_url("sqlite:////a/b.db") == "sqlite:////a/b.db"


# ------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def resumed_study(tmp_path_factory):
    """One study run twice with the same command: 3 trials, then 2 more (an end-to-end study of
    five trainings, ~15-30 s: its tests are in the slow stage)."""
    require_data("dinos.txt")
    cwd = tmp_path_factory.mktemp("study")
    sqlite_store(cwd / "mlflow.db")
    args = [*THRESHOLD, "mlflow.experiment_name=study"]
    first = study_cli(cwd, [*args, "hydra.sweeper.n_trials=3", "hydra.sweep.dir=multirun/1"],
                      in_process=True)
    second = study_cli(cwd, [*args, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=multirun/2"],
                       in_process=True)
    return cwd, first, second


@pytest.mark.slow
def test_the_same_command_continues_the_study(resumed_study):
    cwd, first, second = resumed_study
    study = load(cwd)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    one, two = results_of(cwd / "multirun/1"), results_of(cwd / "multirun/2")
    assert one["this_invocation"] == [0, 1, 2] and two["this_invocation"] == [3, 4]
    assert "3 trials so far" in second.stdout
    # The best is the study's, kept across invocations.
    assert two["best_value"] == pytest.approx(study.best_value)
    assert two["best_value"] <= one["best_value"]
    assert two["best_trial"] == study.best_trial.number


@pytest.mark.slow
def test_a_pruned_trial_is_killed_tagged_and_keeps_its_checkpoint(resumed_study):
    cwd, _, _ = resumed_study
    study = load(cwd)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert pruned and complete, [(t.number, t.params, t.state.name) for t in study.trials]
    assert all(t.params["optimizer.lr"] == 1e-6 for t in pruned)
    assert all(t.params["optimizer.lr"] == 0.05 for t in complete)
    assert all(t.last_step == 20 for t in pruned) and all(t.last_step == 39 for t in complete)
    client = client_for(cwd)
    runs = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    by_trial = trial_runs(runs)
    assert sorted(by_trial) == [0, 1, 2, 3, 4]
    for trial in pruned:
        run = by_trial[trial.number]
        assert run.info.status == "KILLED"
        assert run.data.tags["rnnlab.pruned_at_step"] == "20"
        assert "pruned" in run.data.tags["rnnlab.failure_reason"]
        assert run.info.run_name.startswith(f"#{trial.number} ")
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [
            "checkpoints/step_000021.npz"]
    for trial in complete:
        run = by_trial[trial.number]
        assert run.info.status == "FINISHED" and "rnnlab.pruned_at_step" not in run.data.tags
        assert run.data.metrics["val_loss"] == pytest.approx(trial.value)


@pytest.mark.slow
def test_parent_run_logs_the_study(resumed_study):
    cwd, _, _ = resumed_study
    study = load(cwd)
    client = client_for(cwd)
    exp = client.get_experiment_by_name("study")
    parents = [r for r in client.search_runs([exp.experiment_id])
               if r.data.tags.get("rnnlab.sweep") == "true"]
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    parent = max(parents, key=lambda r: r.info.start_time)  # the second invocation's
    params, metrics = parent.data.params, parent.data.metrics
    assert params["optuna.study"] == "rnnlab"
    assert params["optuna.storage"] == f"sqlite:///{cwd / 'optuna.db'}"
    assert '"name": "threshold"' in params["optuna.pruner"]
    assert metrics["optuna_best_value"] == pytest.approx(study.best_value)
    assert metrics["optuna_best_trial"] == study.best_trial.number
    assert params["best.optimizer.lr"] == str(study.best_params["optimizer.lr"])
    assert metrics["sweep_failed"] == 0 and metrics["sweep_children"] == 2
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"optimization_results.yaml", "optuna_history.png", "optuna_importance.md",
            "optuna_trials.md", "optuna_trials.csv", "optuna_intermediate_values.png",
            "sweep_summary.md"} <= artifacts
    table = (cwd / "multirun/2/optuna_trials.md").read_text()
    children = trial_runs(client.search_runs([exp.experiment_id]))
    runs = {number: run.info.run_id for number, run in children.items()}
    for number, run_id in runs.items():  # every trial links to its run, earlier ones too
        assert f"| {number} |" in table and run_id in table
    assert parent.data.tags["rnnlab.optuna_best_run_id"] == runs[study.best_trial.number]


ACCURACY = ["task=classify", "dataset=names", "cell=gru", "optuna.objective=val_accuracy",
            "hydra/sweeper/pruner=none", "hydra/sweeper/sampler=random",
            "hydra.sweeper.sampler.seed=3", "hydra.sweeper.params=null",
            "optimizer.lr=choice(0.01,0.000001)", "hydra.sweeper.n_trials=2", "train.steps=6",
            "train.eval_every=3", "train.eval_batches=4", "mlflow.experiment_name=acc"]


def test_minimising_accuracy_is_refused_before_the_study_exists(tmp_path):
    refused = run_cli("framework", ["-m", "hparams_search=optuna", *TINY, *ACCURACY,
                                    f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                      tmp_path)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if line.startswith("rnnlab: error")]
    assert errors == ["rnnlab: error: optuna.objective=val_accuracy of task=classify is better "
                      "higher, but hydra.sweeper.direction=minimize; set "
                      "hydra.sweeper.direction=maximize"], refused.stderr[-2000:]
    assert not (tmp_path / "optuna.db").exists()


@pytest.mark.slow
def test_a_classifier_study_maximises_accuracy(tmp_path):
    study_cli(tmp_path, [*ACCURACY, "hydra.sweeper.direction=maximize"])
    study = load(tmp_path)
    assert study.direction.name == "MAXIMIZE"
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    client = client_for(tmp_path)
    runs = trial_runs(client.search_runs([client.get_experiment_by_name("acc").experiment_id]))
    for trial in study.trials:
        metrics = runs[trial.number].data.metrics
        assert 0.0 <= trial.value <= 1.0
        assert trial.value == pytest.approx(metrics["val_accuracy"])
        assert sorted(trial.intermediate_values) == [0, 3, 5]
    assert study.best_value == max(t.value for t in study.trials)


@pytest.mark.slow
def test_two_sweeper_processes_share_one_study(tmp_path):
    """Two workers at once on one fresh sqlite study: no trial number twice, no result lost."""
    args = [*THRESHOLD, "mlflow.experiment_name=workers", "hydra.sweeper.n_trials=3"]
    procs = [study_cli(tmp_path, [*args, f"hydra.sweep.dir=multirun/worker-{w}"], wait=False)
             for w in ("a", "b")]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
    study = load(tmp_path)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(6))
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}  # all told
    mine = [results_of(tmp_path / f"multirun/worker-{w}")["this_invocation"] for w in ("a", "b")]
    assert sorted(mine[0] + mine[1]) == list(range(6)) and len(mine[0]) == len(mine[1]) == 3
    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("workers").experiment_id])
    by_trial = trial_runs(runs)
    assert sorted(by_trial) == list(range(6))
    for trial in study.trials:  # every trial's value is its run's last validation loss
        assert by_trial[trial.number].data.metrics["val_loss"] == pytest.approx(trial.value)
    parents = [r for r in runs if r.data.tags.get("rnnlab.sweep") == "true"]
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}


@pytest.mark.slow
def test_a_study_on_postgresql_through_the_joblib_launcher(tmp_path):
    """Storage on a real PostgreSQL; jobs in joblib workers report their evals there."""
    from tests.tracking.test_postgres import postgres_server

    with postgres_server() as db_uri:
        storage = db_uri.rsplit("/", 1)[0] + "/postgres"  # a database of the fresh cluster
        study_cli(tmp_path, [*THRESHOLD, f"hydra.sweeper.storage={storage}",
                             "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                             "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4",
                             "mlflow.experiment_name=pg"])
        study = optuna.load_study(study_name="rnnlab", storage=storage)
        assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
        assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
        assert all(t.intermediate_values for t in study.trials)  # reported from the workers
        assert any(t.state.name == "PRUNED" for t in study.trials)
    assert not (tmp_path / "optuna.db").exists()


@pytest.mark.slow
def test_a_regular_install_puts_the_sweeper_where_hydra_finds_it(tmp_path):
    """``pip install .`` (not editable) into a fresh venv: Hydra's own plugin scan finds it."""
    import site
    import venv

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    wheel, = wheels.glob("rnnlab-*.whl")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    # The dependencies come from this environment's site-packages, through a .pth file: paths
    # it adds are not site dirs, so this environment's editable-install hook stays out.
    fresh_site = next((env_dir / "lib").glob("python3*/site-packages"))
    (fresh_site / "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    probe = ("import hydra_plugins.rnnlab_optuna_sweeper as p, framework.sweeps.optuna_trial as t;"
             "from hydra.core.plugins import Plugins;"
             "names = Plugins.instance().class_name_to_class;"
             "print(p.__file__); print(t.__file__);"
             "print('hydra_plugins.rnnlab_optuna_sweeper.RnnlabOptunaSweeper' in names)")
    out = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    plugin_file, trial_file, found = out.stdout.split()
    assert plugin_file.startswith(str(fresh_site)) and trial_file.startswith(str(fresh_site))
    assert found == "True"

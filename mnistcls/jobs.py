"""What the commands do, step by step, without click: the layer between the library and the CLI.

`train_all` plans every run (configs x sweep values x datasets), checks every spec
and loads every dataset before the first epoch, so a mistake in the last spec of a
study is found in seconds, not hours. Each run is then trained and recorded in
turn.
"""

import itertools
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field

from mnistcls import data, plots, report, runs, runtime, spec as specs
from mnistcls.build import build_model
from mnistcls.errors import Interrupted, SpecError


@dataclass
class Job:
    spec: object
    dataset: str  # as the user named it: mnist, fashion, or a folder
    sweep: dict = field(default_factory=dict)  # swept field -> this run's value
    run: object = None  # set when resuming


def train_all(configs, datasets, overrides, *, resume=None, device="auto", gpus=None, runs_directory=None,
              data_dir=None, offline=None, quiet=False):
    """Train every planned run; return one result dict per run."""
    placement = runtime.select_strategy(device, gpus)
    planned = [_resumed(resume, runs_directory)] if resume else plan(configs, datasets, overrides)
    loaded = _load_datasets({job.dataset for job in planned}, data_dir, offline, quiet)
    problems = []
    for job in planned:  # every shape checked before the first epoch
        try:
            build_model(job.spec, (*loaded[job.dataset].image_shape, 1), loaded[job.dataset].num_classes)
        except SpecError as err:
            problems += err.problems
    if problems:
        raise SpecError(problems)
    runtime.enable_determinism()
    if not quiet:
        report.console.print(f"Training on {placement.description}")
    return [_train_one(job, loaded[job.dataset], placement, runs_directory, quiet)
            for job in planned]


def plan(configs, datasets, overrides):
    """One Job per config x sweep value x dataset; raise one SpecError listing every problem."""
    alternatives = [specs.split_sweep(o) for o in overrides]
    swept = [alt for alt in alternatives if len(alt) > 1]
    jobs, problems = [], []
    for config in configs:
        for combination in itertools.product(*alternatives):
            for dataset in datasets or [None]:
                extra = [f"data.dataset={dataset}"] if dataset else []
                try:
                    spec = specs.load_spec(config, [*combination, *extra])
                except SpecError as err:
                    problems += [p for p in err.problems if p not in problems]
                    continue
                sweep = {o.partition("=")[0]: o.partition("=")[2] for o in combination
                         if any(o in alt for alt in swept)}
                jobs.append(Job(spec, spec.data.dataset, sweep))
    if problems:
        raise SpecError(problems)
    return jobs


def _resumed(reference, runs_directory):
    run = runs.find(reference, runs_directory)
    runs.resume(run)
    spec = specs.parse_spec(run.spec_text, str(run.path / "spec.yaml"))
    return Job(spec, run.info["dataset"], run.info.get("sweep", {}), run)


def _load_datasets(names, data_dir, offline, quiet):
    with nullcontext() if quiet else report.DownloadProgress() as progress:
        return {name: data.load(name, data_dir=data_dir, offline=offline, progress=progress) for name in names}


def _train_one(job, dataset, placement, runs_directory, quiet):
    from mnistcls import train  # imports TensorFlow: only when a run is about to start

    spec = job.spec
    precision = runtime.choose_precision(spec.train.precision, placement.on_gpu)
    run = job.run or runs.create(runs_directory, spec, job.dataset, {
        "sweep": job.sweep, "device": placement.description,
        "replicas": placement.strategy.num_replicas_in_sync,
        "precision": precision, "versions": runtime.versions(), "command": sys.argv,
        "data": {"source": dataset.source, "verified": dataset.verified},
    })
    title = f"{spec.name} on {dataset.name}  ({precision}, run {run.path})"
    try:
        with nullcontext() if quiet else report.TrainingProgress(title) as progress:
            _, result = train.fit(spec, dataset, run.path, strategy=placement.strategy, precision=precision,
                                  progress=progress)
    except KeyboardInterrupt:
        run.update(status="interrupted")
        raise Interrupted(f"interrupted: {run.path} keeps the last completed epoch; "
                          f"continue with: mnistcls train --resume {run.id}") from None
    except BaseException as err:
        run.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    runs.finish(run, result.to_dict())
    plots.learning_curves({run.id: run.curves}, run.path / "curves.png", title=f"{spec.name} on {dataset.name}")
    row = {"run": run.id, "config": spec.name, "dataset": dataset.name, "sweep": job.sweep, **result.to_dict()}
    if not quiet:
        report.console.print(report.results_table([row]))
    return row

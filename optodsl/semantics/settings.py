"""Settings: a spec's `set` statements and `--set key=value` applied to a configuration, each
value checked against its setting's type and bounds (and the chosen task's keys), errors at the
span that wrote it. Runs no JAX."""

from __future__ import annotations

import functools
import json
import os
from typing import Annotated

from pydantic import TypeAdapter, ValidationError

from ..config import SCHEDULABLE, ExperimentConfig, SettingValueError, TASK_CONFIGS, section_models, setting_keys, task_keys, with_settings
from ..errors import Span, SpecError
from ..syntax import ast
from ..syntax.hints import close, did_you_mean
from ..syntax.load import beside
from ..tasks import check_config, reads_section, section_readers
from .plan import MAX_SEQUENCES
from .resolve import Resolver, span_text


def apply_settings(config: ExperimentConfig, spec: ast.Spec, r: Resolver) -> ExperimentConfig:
    """Apply the spec's `set` statements together: each value is checked at its own span, and the
    rules between settings (e.g. classes + test_classes <= total_classes) once all are set, so
    their order does not matter; such an error points at the last `set` of that section."""
    keys = setting_keys()
    sets = [st for st in spec.statements if isinstance(st, ast.Set)]
    task = _task_name(config, [("task.name", r.python(st.value), st.value.span) for st in sets if st.key == ("task", "name")])
    values: dict[str, object] = {}
    changes: list[dict] = []
    last_in_section: dict[str, ast.Set] = {}
    last_of_key: dict[str, ast.Set] = {}
    for st in sets:
        key = ".".join(st.key)
        if key not in keys:
            raise SpecError(st.span, f"unknown setting '{key}'", hint=close(key, keys, "settings"))
        if key == "data.schedule":
            raise SpecError(st.span, "data.schedule is written one change at a time",
                            hint="write set data.zipf = 1.0 during 200k.. (any of " + SCHEDULABLE_TEXT + ")")
        if st.during is not None:
            _check_schedulable(key, st)
        value = r.python(st.value)
        _check_misplaced_source(key, task, value, st.span)
        _check_task_key(key, task, st.span)
        if key in SPEC_RELATIVE and value:
            value = os.path.abspath(beside(st.span.path, str(value)))
        if isinstance(value, list):
            value = tuple(value)
        try:
            checked = _field_adapter(key, task).validate_python(value)
        except ValidationError as exc:
            written = f"set {key} = [{span_text(st.value.span)}]"
            err = _deepest(exc.errors())
            raise SpecError(st.value.span, f"invalid value for {key}: {_message(err)}",
                            hint=_list_hint(err, written)) from None
        if st.during is None:
            values[key] = checked
        else:
            start, stop, _ = r.schedule(st.during)
            changes.append({"key": st.key[1], "value": checked, "start": start, "stop": None if stop >= MAX_SEQUENCES else stop})
        last_in_section[st.key[0]] = st
        last_of_key[key] = st
    if changes:
        values["data.schedule"] = tuple(changes)
    if not values:
        return config
    try:
        return with_settings(config, values)
    except ValidationError as exc:
        err = exc.errors()[0]
        culprit = getattr(err.get("ctx", {}).get("error"), "key", None)  # a rule that names its setting
        st = (last_of_key.get(culprit) or last_in_section.get(culprit.split(".")[0]) if culprit else None) \
            or last_in_section.get(str(err["loc"][0]) if err["loc"] else "", list(last_in_section.values())[-1])
        raise SpecError(st.value.span, f"invalid value for {'.'.join(st.key)}: {_message(err)}") from None


SCHEDULABLE_TEXT = ", ".join(f"data.{k}" for k in SCHEDULABLE)


def _check_schedulable(key: str, st: ast.Set) -> None:
    """Only a data value of the training stream (`SCHEDULABLE`) may change during training, and only
    over a range of sequences."""
    if not key.startswith("data.") or key.split(".")[1] not in SCHEDULABLE:
        what = ("it fixes the shapes of the program's arrays" if key.startswith(("data.", "model."))
                else "only the training stream's data values change during training")
        raise SpecError(st.during.span, f"'{key}' cannot change during training: {what}",
                        hint=f"a schedule may change {SCHEDULABLE_TEXT}; write the others without `during`")
    if isinstance(st.during, ast.PhaseSchedule):
        raise SpecError(st.during.span, f"a data value changes over a range of training sequences, not during {st.during.phase}",
                        hint=f"write set {key} = ... during 200k.. (or START..STOP); the evaluation sets keep their own draws")


def check_task_settings(config: ExperimentConfig, statements, path: str | None, cli: dict[str, object] | None = None,
                        cli_span: Span | None = None) -> None:
    """Once every setting is applied (the spec's, then `--set`), the task has each evaluation set and
    measure they name (`tasks.check_config`); else an error at the `--set` or the `set` that wrote the
    key, or the one that chose the task."""
    try:
        check_config(config)
    except SettingValueError as exc:
        cli = cli or {}
        if exc.key in cli or ("task.name" in cli and exc.key not in _keys_set(statements)):
            key = exc.key if exc.key in cli else "task.name"
            where = cli_span or Span(path="--set", line_text=f"{key}={cli[key]}", end_column=len(f"{key}={cli[key]}") + 1)
            raise SpecError(where, f"invalid value for {key}: {exc}") from None
        sets = [st for st in statements if isinstance(st, ast.Set)]
        st = next((st for st in reversed(sets) if ".".join(st.key) == exc.key), None) \
            or next((st for st in reversed(sets) if st.key == ("task", "name")), None)
        if st is None:
            raise SpecError(Span(path=path or "<spec>"), f"invalid settings: {exc}") from None
        raise SpecError(st.value.span, f"invalid value for {'.'.join(st.key)}: {exc}") from None


def _keys_set(statements) -> set[str]:
    return {".".join(st.key) for st in statements if isinstance(st, ast.Set)}


def _task_name(config: ExperimentConfig, settings: list[tuple[str, object, Span]]) -> str:
    """The task these settings run: the last `task.name` among them, else the configured one."""
    name = config.task.name
    for key, value, span in settings:
        if key == "task.name":
            if value not in TASK_CONFIGS:
                raise SpecError(span, f"unknown task {value!r}", hint=close(str(value), TASK_CONFIGS, "tasks"))
            name = value
    return name


def _check_task_key(key: str, task: str, span: Span) -> None:
    """A `task.*` key the chosen task lacks is an error that lists the keys it has; so is a key of a
    task-owned section (`data.*`) the chosen task does not read, which would be recorded but not apply."""
    section = key.split(".")[0]
    if not reads_section(task, section):
        readers = " or ".join(f'set task.name = "{name}"' for name in section_readers(section))
        raise SpecError(span, f"the {task} task does not read the {section} section, so '{key}' would have no effect",
                        hint=f"remove this setting, or choose a task that reads it: {readers}")
    if key.startswith("task.") and key not in task_keys(task):
        owners = [name for name in TASK_CONFIGS if key in task_keys(name)]
        other = (f"'{key}' is a setting of the {' and '.join(owners)} task; choose it with set task.name = "
                 f"\"{owners[0]}\"" if owners else "choose another task with set task.name = ...")
        raise SpecError(span, f"the {task} task has no setting '{key}'",
                        hint=f"its settings are {', '.join(task_keys(task))}; {other}")


SPEC_RELATIVE = ("task.source",)
"""Settings that name a file: a relative path in a spec is relative to the spec file that sets it
(as an import is); on the command line, to the working directory. Either is kept absolute, so a
run's config.json names the file it read wherever the run is read from."""


def _check_misplaced_source(key: str, task: str, value: object, span: Span) -> None:
    """`data.source` (the few-shot task's feature table) set under a task that reads its own file
    from `task.source` is an error pointing there."""
    if key == "data.source" and "task.source" in task_keys(task):
        raise SpecError(span, f"data.source is the few-shot task's feature table; the {task} task reads its file "
                              "from task.source", hint=f"write set task.source = {json.dumps(str(value))}")


@functools.cache
def _field_adapter(key: str, task: str = "fewshot") -> TypeAdapter:
    """A validator of one setting's own type and bounds (without the rules between settings)."""
    section, name = key.split(".")
    model = TASK_CONFIGS[task] if section == "task" else section_models(section)[0]
    field = model.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, *field.metadata]) if field.metadata else TypeAdapter(field.annotation)


def apply_cli(config: ExperimentConfig, cli: dict[str, object], span: Span | None = None) -> ExperimentConfig:
    """Apply `--set key=value` settings; unknown keys and invalid values are spec errors at `--set`."""
    keys = setting_keys()
    ordered = sorted(cli.items(), key=lambda kv: kv[0] != "task.name")  # a new task first, then its keys

    def where_of(key, value) -> Span:
        return span or Span(path="--set", line=1, column=1, end_line=1, end_column=len(f"{key}={value}") + 1,
                            line_text=f"{key}={value}")

    task = _task_name(config, [(k, v, where_of(k, v)) for k, v in ordered])
    for key, value in ordered:
        where = where_of(key, value)
        if key not in keys:
            raise SpecError(where, f"unknown setting '{key}'",
                            hint=did_you_mean(key, keys).rstrip() or "settings are section.field, e.g. train.lr")
        _check_misplaced_source(key, task, value, where)
        _check_task_key(key, task, where)
        if key in SPEC_RELATIVE and value:
            value = os.path.abspath(str(value))
        try:
            config = with_settings(config, {key: tuple(value) if isinstance(value, list) else value})
        except ValidationError as exc:
            raise SpecError(where, f"invalid value for {key}: {_message(exc.errors()[0])}",
                            hint=_list_hint(exc.errors()[0], f"--set '{key}=[{value}]'")) from None
    return config


def _list_hint(error: dict, written: str) -> str | None:
    """For a setting that takes a list given a single value, how to write it as one."""
    return f"this setting takes a list in brackets: {written}" if error["type"] in ("tuple_type", "list_type") else None


def _deepest(errors: list[dict]) -> dict:
    """Of a union's errors, the one of the form the value got furthest in (a list's item rather than
    'not an integer'); the first where none did."""
    return max(errors, key=lambda e: len(e["loc"]))


def _message(error: dict) -> str:
    """A pydantic error's message without its 'Value error, ' prefix."""
    return str(error["msg"]).removeprefix("Value error, ")

"""A program: the jitted pieces that train and evaluate runs sharing shapes as one, vmapped over a
leading member axis (sharded across local devices), and the key that says which runs may share one.

One jitted `chunk` runs the steps between two evaluations with `lax.scan` and then evaluates every
set, so the host synchronises once per evaluation, not once per step. Training data for step `s` is
drawn from `fold_in(data_key, s)`, so the stream depends only on the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import equinox as eqx
import numpy as np
import jax
import jax.numpy as jnp
import optax

from ..config import ExperimentConfig, SeedConfig
from ..measures import measures_fn
from ..model.overrides import Context, Forward, as_forward
from ..model.protocol import Intervenable, ModelSource, check_sites, declared, factory, layer_count
from ..tasks import Task, build_task, eval_sets, layout, task_class
from ..tasks.records import TRAIN, record_key, set_key
from .restore import make_optimizer, new_model

Measures = Callable[[dict[str, jax.Array], dict[str, jax.Array], jax.Array], dict[str, jax.Array]]
"""`(activations, batch, query logits) -> {name: scalar}`, evaluated on each evaluation set: a user's
measures, as `train(measures=...)` takes them."""
ModelMeasures = Callable[[dict[str, jax.Array], dict[str, jax.Array], jax.Array, Any], dict[str, jax.Array]]
"""The program's hook: a `Measures` that also gets the model (built-in measures such as `copying`
read weights)."""


def sweep_key(config: ExperimentConfig) -> ExperimentConfig:
    """The settings that must agree for runs to share one program: all but seeds, learning rate and
    the values the task draws as traced arrays (`Task.values_of`: the few-shot stream's burstiness,
    Zipf exponent, noise, mixture weights and their schedules)."""
    config = task_class(config).without_values(config)
    return config.model_copy(update={"seed": SeedConfig(), "train": config.train.model_copy(update={"lr": 1.0})})


def program_key(plan, config: ExperimentConfig | None = None) -> tuple:
    """What must agree for runs, or plans scored on one model, to share one compiled program: the
    plan's tree structure and leaf shapes, and with `config` its settings but seeds, learning rate and
    the task's values (`sweep_key`), and the shapes of those values. Equal keys, one program."""
    leaves, structure = jax.tree.flatten(plan)
    shapes = (structure, tuple(jnp.shape(x) for x in leaves))
    if config is None:
        return shapes
    values = tuple(np.shape(x) for x in jax.tree.leaves(task_class(config).values_of(config)))
    return (sweep_key(config).model_dump_json(), values, *shapes)


def program_groups(plans: list, configs: list[ExperimentConfig]) -> list[list[int]]:
    """The runs (indices) that train together, one list per program in the order they train: equal
    `program_key`s share one program; different interventions (another verb, site or pass) or
    settings other than seeds, learning rate and the task's values make another program, trained after it."""
    groups: dict[tuple, list[int]] = {}
    for i, (plan, config) in enumerate(zip(plans, configs)):
        groups.setdefault(program_key(plan, config), []).append(i)
    return list(groups.values())


PROGRAMS_NOTE = ("runs share one program only when their interventions have the same structure and their "
                 "settings differ in seeds, train.lr and data values (not shapes) alone")
"""Why runs of one `opto run` train in several programs, one after another."""


def programs_text(names: list[list[str]]) -> list[str]:
    """Lines saying that several programs train one after another, and which runs each holds."""
    if len(names) < 2:
        return []
    return [f"{len(names)} programs train one after another ({PROGRAMS_NOTE}):",
            *(f"  program {g}: {', '.join(group)}" for g, group in enumerate(names, 1))]


@dataclass
class Program:
    """The jitted pieces of a sweep of M runs that share shapes: initial states, evaluation and
    the fused chunk, all vmapped over a leading member axis (sharded across local devices)."""

    configs: list[ExperimentConfig]
    static_forward: Any
    forward_arrays: Any
    task: Task
    eval_batches: dict[str, dict[str, jax.Array]]
    shared_eval: bool
    measures: ModelMeasures | None = None
    steps_per_eval: int = 1
    sharding: Any = None
    init_model: Callable[[jax.Array], Intervenable] | None = None
    """A model of one's own as a factory `key -> model`; None builds the built-in `new_model`."""
    task_values: Any = None
    """Each member's `Task.values_of`, member-stacked: the values the task draws as traced arrays."""
    _chunks: dict[int, Callable] = field(default_factory=dict)
    _trains: dict[int, Callable] = field(default_factory=dict)
    _evaluate: Callable | None = None

    @property
    def config(self) -> ExperimentConfig:
        return self.configs[0]

    def forward(self, arrays) -> Forward:
        return eqx.combine(arrays, self.static_forward)

    def init_state(self):
        """Stacked (model, optimiser state, step) of every member, from each member's init seed and lr."""
        cfg = self.config
        keys = jnp.stack([jax.random.PRNGKey(c.seed.init) for c in self.configs])
        lrs = jnp.asarray([c.train.lr for c in self.configs], jnp.float32)
        make = self.make_model

        def one(key, lr):
            model = make(key)
            return model, make_optimizer(cfg, lr).init(eqx.filter(model, eqx.is_array)), jnp.zeros((), jnp.int32)

        return self.place(eqx.filter_vmap(one)(keys, lrs))

    def make_model(self, key: jax.Array) -> Intervenable:
        """A freshly initialised model of this program (its own model's factory, or the built-in)."""
        return self.init_model(key) if self.init_model is not None else new_model(self.config, key)

    def place(self, tree):
        """Put member-stacked arrays on their devices (a no-op on one device)."""
        if self.sharding is None:
            return tree
        return jax.tree.map(lambda x: jax.device_put(x, self.sharding) if eqx.is_array(x) else x, tree)

    def data_keys(self) -> jax.Array:
        return self.place(jnp.stack([jax.random.PRNGKey(c.seed.data) for c in self.configs]))

    def evaluate(self, forward, model, step: jax.Array, task: Task, eval_batches) -> dict[str, jax.Array]:
        """Loss, accuracy and measures of every evaluation set for one member (traceable)."""
        out: dict[str, jax.Array] = {}
        ctx = Context(sequences=step * self.config.train.batch, training=False)
        for name, batch in eval_batches.items():
            logits, acts = forward(model, batch, ctx)
            loss, acc = task.loss_and_accuracy(logits, batch)
            out[set_key(name, "loss")], out[set_key(name, "accuracy")] = loss, acc
            for key, value in task.metrics(logits, batch).items():
                out[record_key(name, key)] = value
            if self.measures is not None:
                for key, value in self.measures(acts, batch, logits, model).items():
                    out[record_key(name, key)] = value
            for probe_name, probe in forward.probes.items():
                probe_logits, _ = probe(model, batch, ctx)
                probe_loss, probe_acc = task.loss_and_accuracy(probe_logits, batch)
                out[record_key(name, probe_name, "loss")], out[record_key(name, probe_name, "accuracy")] = probe_loss, probe_acc
        return out

    def evaluate_all(self) -> Callable:
        """The jitted `(state, forward_arrays, task, eval_batches) -> metrics` over every member."""
        if self._evaluate is not None:
            return self._evaluate

        def one(state, arrays, task, eval_batches):
            return self.evaluate(self.forward(arrays), state[0], state[2], task, eval_batches)

        axes = (0, 0, None, None if self.shared_eval else 0)
        self._evaluate = eqx.filter_jit(eqx.filter_vmap(one, in_axes=axes))
        return self._evaluate

    def train_steps(self, n_steps: int) -> Callable:
        """`(states, forward_arrays, data_keys, task_values, task) -> (states, metrics)`: `n_steps` training steps
        per member fused with `lax.scan` in one jitted program, without evaluation (a chunk ends
        with one; a kept series point inside a chunk splits its training here)."""
        if n_steps in self._trains:
            return self._trains[n_steps]
        batch_size = self.config.train.batch
        optimizer = make_optimizer(self.config)

        def run(state, arrays, data_key, values, task):
            task = task.with_values(values)
            forward = self.forward(arrays)
            weights = getattr(forward, "weights", None)  # a compiled spec's freeze, lr_scale and reinit statements
            model, opt_state, step0 = state
            params, static = eqx.partition(model, eqx.is_array)
            fresh = [] if weights is None else [eqx.filter(self.make_model(jax.random.PRNGKey(t.seed)), eqx.is_array)
                                                for t in weights.reinits]

            def loss_fn(params, batch, ctx):
                logits, _ = forward(eqx.combine(params, static), batch, ctx)
                return task.loss_and_accuracy(logits, batch)

            def one(carry, _):
                params, opt_state, step = carry
                ctx = Context(sequences=step * batch_size, training=True)
                batch = task.at(ctx.sequences).sample(jax.random.fold_in(data_key, step), TRAIN, batch_size)
                if weights is not None:
                    params, opt_state = weights.reinit(params, opt_state, fresh, ctx.sequences, batch_size)
                (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, ctx)
                updates, new_opt = optimizer.update(grads, opt_state, params)
                if weights is None:
                    return (optax.apply_updates(params, updates), new_opt, step + 1), (loss, acc)
                params, new_opt = weights.update(params, updates, opt_state, new_opt, ctx.sequences)
                return (params, new_opt, step + 1), (loss, acc)

            (params, opt_state, step), (losses, accs) = jax.lax.scan(one, (params, opt_state, step0), None, length=n_steps)
            metrics = {"train_loss": losses.mean(), "train_accuracy": accs.mean(), "finite": jnp.all(jnp.isfinite(losses))}
            return (eqx.combine(params, static), opt_state, step), metrics

        self._trains[n_steps] = eqx.filter_jit(eqx.filter_vmap(run, in_axes=(0, 0, 0, 0, None)))
        return self._trains[n_steps]

    def chunk(self, n_steps: int) -> Callable:
        """`(states, forward_arrays, data_keys, task_values, task, eval_batches) -> (states, metrics)`: `n_steps`
        training steps (`train_steps`), then the evaluation in another program (`evaluate_all`).
        Fused into the training program and sharded over two CPU devices, the evaluation came out
        wrong for chunks of about 100 steps and more under jaxlib 0.10.2 (tests/test_sweep.py holds
        the case), while the training states were right."""
        if n_steps in self._chunks:
            return self._chunks[n_steps]
        train = self.train_steps(n_steps)
        evaluate = self.evaluate_all()

        def fn(states, arrays, data_keys, task_values, task, eval_batches):
            states, metrics = train(states, arrays, data_keys, task_values, task)
            return states, {**evaluate(states, arrays, task, eval_batches), **metrics}

        self._chunks[n_steps] = fn
        return fn


def build_program(configs: ExperimentConfig | list[ExperimentConfig], forwards=None, *, features=None,
                  measures: Measures | None = None, model: ModelSource | None = None) -> Program:
    """Assemble task, evaluation sets and member-stacked forwards for runs that share shapes.

    `configs` may differ only in seeds, learning rate and the task's values (see `sweep_key`); `forwards` are
    overrides builders, Forwards or None, one per config (or one for all), whose static parts agree.
    `model` is a model of one's own (an instance, or a factory `key -> model`) in place of the
    built-in transformer; its forward must record the sites it declares (`check_sites`).
    """
    configs = [configs] if isinstance(configs, ExperimentConfig) else list(configs)
    if not isinstance(forwards, (list, tuple)):
        forwards = [forwards] * len(configs)
    if any(not isinstance(f, eqx.Module) and f is not forwards[0] for f in forwards):
        # plain functions carry no arrays to stack: only one shared function can serve every run
        raise ValueError("runs of one program need one shared overrides function, or compiled plans")
    forwards = [as_forward(f) for f in forwards]
    config = configs[0]
    if any(sweep_key(c) != sweep_key(config) for c in configs):
        raise ValueError("runs of one program may differ only in seeds, learning rate and the task's values")
    parts = [eqx.partition(f, eqx.is_array) for f in forwards]
    static = parts[0][1]
    if any(jax.tree.structure(f) != jax.tree.structure(forwards[0]) for f in forwards):
        raise ValueError("runs of one program need interventions of the same structure")
    forward_arrays = jax.tree.map(lambda *xs: jnp.stack(xs), *[p[0] for p in parts]) if parts[0][0] is not None else None
    task = build_task(config, features)
    values = [jax.tree.map(jnp.asarray, type(task).values_of(c)) for c in configs]
    if len({jax.tree.structure(v) for v in values}) > 1 or len({tuple(jnp.shape(x) for x in jax.tree.leaves(v)) for v in values}) > 1:
        raise ValueError("runs of one program need data values of the same shapes (as many generators and segments)")
    task = task.with_values(values[0], configs)

    def batches(cfg, vals):
        key = jax.random.PRNGKey(cfg.seed.eval)
        own = task.with_values(vals)
        return {name: own.sample(jax.random.fold_in(key, i), name, cfg.eval.sequences) for i, name in enumerate(eval_sets(cfg))}

    same_values = all(all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(values[0])))
                      for v in values)
    shared_eval = len({c.seed.eval for c in configs}) == 1 and same_values
    eval_batches = (batches(config, values[0]) if shared_eval
                    else jax.tree.map(lambda *xs: jnp.stack(xs), *[batches(c, v) for c, v in zip(configs, values)]))
    every = config.eval.every
    steps_per_eval = max(1, round(every / config.train.batch)) if isinstance(every, int) else 1  # a list: `series.eval_steps`
    layers = config.model.layers
    if model is not None:
        lay = layout(config)
        check_sites(model, jax.eval_shape(lambda key: task.sample(key, eval_sets(config)[0], 1), jax.random.PRNGKey(0)), lay)
        layers = layer_count(declared(model).sites(lay))
    if measures is None:
        hook = measures_fn(config.eval.measures, layers, type(task), layout(config).roles)
    else:
        def hook(acts, batch, logits, model_):  # a user's measures do not take the model
            return measures(acts, batch, logits)
    devices = jax.local_devices()
    sharding = None
    if len(configs) > 1 and len(devices) > 1 and len(configs) % len(devices) == 0:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.array(devices), ("members",)), PartitionSpec("members"))
    program = Program(configs, static, forward_arrays, task, eval_batches, shared_eval, hook, steps_per_eval, sharding,
                      init_model=factory(model) if model is not None else None)
    program.forward_arrays = program.place(forward_arrays)
    program.task_values = program.place(jax.tree.map(lambda *xs: jnp.stack(xs), *values))
    if not shared_eval:
        program.eval_batches = program.place(eval_batches)
    return program

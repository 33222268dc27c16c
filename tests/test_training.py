import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impl.optimization.adam import sgd
from impl.training import TrainingDiverged, even_chunk, first_step, train

pytestmark = pytest.mark.strict_dtypes  # no implicit dtype promotion in this module's code

OPT = sgd(0.1)


def regression_loss(params, batch, key):
    del key
    pred = batch["x"] @ params["w"] + params["b"]
    return jnp.mean((pred - batch["y"]) ** 2), {"abs_w": jnp.abs(params["w"]).sum()}


def _data(seed=0, n=64):
    k1, k2 = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(k1, (n, 3))
    y = x @ jnp.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.01 * jax.random.normal(k2, (n, 1))
    return {"x": x, "y": y}


def _params():
    return {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1, 1))}


def test_train_fits_linear_regression_and_records_history():
    result = train(
        regression_loss, _params(), OPT, _data(), key=0, steps=300, batch_size=16, chunk=100
    )
    assert result.history["loss"].shape == (300,)
    assert result.history["abs_w"].shape == (300,)
    assert result.history["loss"][-1] < 1e-3 < result.history["loss"][0]
    np.testing.assert_allclose(np.asarray(result.params["w"]).ravel(), [1.0, -2.0, 0.5], atol=0.02)


def test_train_is_deterministic_and_independent_of_chunking():
    a = train(regression_loss, _params(), OPT, _data(), key=3, steps=120, batch_size=8, chunk=40)
    b = train(regression_loss, _params(), OPT, _data(), key=3, steps=120, batch_size=8, chunk=40)
    c = train(regression_loss, _params(), OPT, _data(), key=3, steps=120, batch_size=8, chunk=120)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    np.testing.assert_allclose(a.history["loss"], c.history["loss"], rtol=1e-6)
    d = train(regression_loss, _params(), OPT, _data(), key=4, steps=120, batch_size=8, chunk=40)
    assert not np.array_equal(a.history["loss"], d.history["loss"])


def test_second_call_with_new_values_does_not_recompile():
    traces = []

    def loss(params, batch, key):
        traces.append(1)  # runs only while tracing
        return regression_loss(params, batch, key)

    opt = sgd(0.05)
    train(loss, _params(), opt, _data(0), key=0, steps=50, batch_size=8, chunk=25)
    first = len(traces)
    train(
        loss,
        {"w": jnp.ones((3, 1)), "b": jnp.ones((1, 1))},
        opt,
        _data(1),
        key=1,
        steps=50,
        batch_size=8,
        chunk=25,
    )
    assert first >= 1 and len(traces) == first


def test_nan_guard_names_the_step_and_metric():
    def exploding(params, batch, key):
        del batch, key
        return jnp.log(1.0 - params["t"][0]), {}  # t = 0.125 (step - 1): log(0) at step 9

    with pytest.raises(TrainingDiverged, match=r"training diverged at step 9: loss = -inf") as info:
        train(
            exploding,
            {"t": jnp.zeros((1,))},
            _ConstantStep(0.125),
            {"x": jnp.zeros((2, 1))},
            key=0,
            steps=20,
            chunk=5,
        )
    assert (info.value.step, info.value.metric) == (9, "loss")


class _ConstantStep:
    """A transformation that adds a fixed amount each step, to make divergence predictable."""

    def __new__(cls, amount):
        import optax

        return optax.GradientTransformation(
            lambda p: optax.EmptyState(),
            lambda g, s, p=None: (jax.tree.map(lambda x: jnp.full_like(x, amount), g), s),
        )


def test_eval_fn_runs_after_each_chunk():
    def evaluate(params):
        return {"w0": params["w"][0, 0]}

    result = train(
        regression_loss,
        _params(),
        OPT,
        _data(),
        key=0,
        steps=90,
        batch_size=16,
        chunk=30,
        eval_fn=evaluate,
    )
    assert result.evals["step"].tolist() == [30, 60, 90]
    assert abs(result.evals["w0"][-1] - 1.0) < 0.1


def test_model_state_is_threaded_through_steps():
    def counting(params, state, batch, key):
        del key
        loss, metrics = regression_loss(params, batch, None)
        return loss, (metrics, {"seen": state["seen"] + batch["x"].shape[0]})

    result = train(
        counting,
        _params(),
        OPT,
        _data(),
        key=0,
        steps=10,
        batch_size=4,
        model_state={"seen": jnp.int32(0)},
    )
    assert int(result.model_state["seen"]) == 40


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"steps": 0}, ValueError, "steps: expected a positive integer"),
        ({"steps": 10, "chunk": -1}, ValueError, "chunk"),
        ({"steps": 10, "batch_size": 0}, ValueError, "batch_size"),
        ({"steps": 10, "key": "seed"}, TypeError, "key"),
    ],
)
def test_train_rejects_bad_arguments(kwargs, error, message):
    kwargs = {"key": 0, **kwargs}
    with pytest.raises(error, match=message):
        train(regression_loss, _params(), OPT, _data(), **kwargs)


def test_train_rejects_ragged_data():
    with pytest.raises(ValueError, match="data: expected arrays sharing a leading"):
        train(
            regression_loss,
            _params(),
            OPT,
            {"x": jnp.zeros((4, 3)), "y": jnp.zeros((5, 1))},
            key=0,
            steps=1,
        )


@pytest.mark.multidevice
@pytest.mark.slow
def test_data_parallel_on_eight_devices_matches_one_device():
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        assert len(jax.devices()) == 8, jax.devices()
        from impl.optimization.adam import sgd
        from impl.training import train, _mesh_for
        k1, k2 = jax.random.split(jax.random.key(0))
        x = jax.random.normal(k1, (256, 3))
        y = x @ jnp.array([[1.0], [-2.0], [0.5]]) + 0.1 * jax.random.normal(k2, (256, 1))
        data = {"x": x, "y": y}
        def loss(p, b, k):
            return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)
        opt = sgd(0.05, momentum=0.9)
        p0 = {"w": jnp.zeros((3, 1))}
        assert _mesh_for(64, jax.devices()).devices.size == 8
        many = train(loss, p0, opt, data, key=1, steps=60, batch_size=64, chunk=20)
        one = train(
            loss, p0, opt, data, key=1, steps=60, batch_size=64, chunk=20, devices=jax.devices()[:1]
        )
        assert len(many.params["w"].sharding.device_set) == 8
        np.testing.assert_allclose(many.history["loss"], one.history["loss"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(many.params["w"], one.params["w"], rtol=1e-5, atol=1e-6)
        print("ok", float(many.history["loss"][-1]))
        """
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_nested_metrics_are_flattened_and_array_metrics_kept():
    def nested(params, batch, key):
        loss, _ = regression_loss(params, batch, key)
        return loss, {"weights": {"w0": params["w"][0, 0]}}

    result = train(nested, _params(), OPT, _data(), key=0, steps=5, batch_size=8)
    assert result.history["weights/w0"].shape == (5,)

    def vector_metric(params, batch, key):
        loss, _ = regression_loss(params, batch, key)
        return loss, {"w": params["w"]}

    result = train(vector_metric, _params(), OPT, _data(), key=0, steps=5, batch_size=8)
    assert result.history["w"].shape == (5, 3, 1)


@pytest.mark.parametrize(
    ("steps", "largest", "chunk"),
    [(1200, 300, 300), (1000, 300, 250), (700, 500, 350), (7, 250, 7), (13, 5, 1)],
)
def test_even_chunk_is_the_largest_divisor_within_the_bound(steps, largest, chunk):
    assert even_chunk(steps, largest) == chunk


def test_even_chunk_rejects_bad_sizes():
    with pytest.raises(ValueError, match="steps"):
        even_chunk(0)
    with pytest.raises(ValueError, match="largest"):
        even_chunk(10, 0)


def test_first_step_counts_steps_until_the_running_mean_crosses():
    loss = np.r_[np.ones(10), np.zeros(10)]  # 3-step mean: 1, ..., 2/3, 1/3, 0, ...
    assert first_step(loss, 0.5, window=3) == 12  # the mean of steps 10-12 is the first below 0.5
    assert first_step(loss, -1.0, window=3) is None  # never
    assert first_step(1 - loss, 0.5, window=3, below=False) == 12  # the same crossing, upwards
    with pytest.raises(ValueError, match="window"):
        first_step(loss, 0.5, window=0)


def test_an_optimizer_rebuilt_with_the_same_hyperparameters_does_not_recompile():
    traces = []

    def loss(params, batch, key):
        traces.append(1)  # runs only while tracing
        return regression_loss(params, batch, key)

    train(
        loss, _params(), sgd(0.05, momentum=0.9), _data(0), key=0, steps=20, batch_size=8, chunk=10
    )
    first = len(traces)
    train(
        loss, _params(), sgd(0.05, momentum=0.9), _data(0), key=0, steps=20, batch_size=8, chunk=10
    )
    assert first >= 1 and len(traces) == first  # a new object, the same configuration: no trace
    train(
        loss, _params(), sgd(0.07, momentum=0.9), _data(0), key=0, steps=20, batch_size=8, chunk=10
    )
    assert len(traces) > first  # another learning rate is another program


def test_a_loss_rebuilt_from_the_same_code_and_values_does_not_recompile():
    traces = []

    def make_loss(scale):
        def loss(params, batch, key):
            traces.append(scale)
            value, metrics = regression_loss(params, batch, key)
            return scale * value, metrics

        return loss

    train(make_loss(2.0), _params(), OPT, _data(0), key=0, steps=10, chunk=10)
    first = len(traces)
    train(make_loss(2.0), _params(), OPT, _data(0), key=0, steps=10, chunk=10)
    assert len(traces) == first
    train(make_loss(3.0), _params(), OPT, _data(0), key=0, steps=10, chunk=10)
    assert len(traces) > first


def test_fingerprint_keys_configurations_not_objects():
    from impl.training import fingerprint

    assert fingerprint(sgd(0.1, momentum=0.9)) == fingerprint(sgd(0.1, momentum=0.9))
    assert fingerprint(sgd(0.1, momentum=0.9)) != fingerprint(sgd(0.1, momentum=0.8))
    assert fingerprint(0.0) != fingerprint(-0.0)
    assert fingerprint(jnp.arange(3.0)) == fingerprint(jnp.arange(3.0))
    assert (
        fingerprint(jax.random.key(1))
        == fingerprint(jax.random.key(1))
        != fingerprint(jax.random.key(2))
    )
    big = jnp.zeros(1000)
    assert fingerprint(big) != fingerprint(jnp.zeros(1000))  # large arrays: by identity
    mutable = [1]
    assert fingerprint(mutable) != fingerprint([1])  # mutable containers: by identity


def test_the_compile_cache_is_bounded():
    from impl.training import _CompileCache

    cache = _CompileCache(maxsize=3)
    for i in range(5):
        cache.get(i, lambda i=i: i)
    assert list(cache.entries) == [2, 3, 4]
    assert cache.get(3, lambda: "rebuilt") == 3 and cache.hits == 1 and cache.misses == 5


def test_run_takes_any_step_two_players_taking_turns():
    """A two-player toy: x minimises x·y, y maximises it, alternating — the GAN shape of loop."""
    from impl.training import run

    def step(state, batch, key):
        del batch, key
        x, y, t = state
        gx = y  # d(x y)/dx
        gy = x
        x = jnp.where(t % 2 == 0, x - 0.1 * gx, x)  # even steps: player 1 moves
        y = jnp.where(t % 2 == 1, y + 0.1 * gy, y)  # odd steps: player 2 moves
        return (x, y, t + 1), {"value": x * y, "players": {"x": x, "y": y}}

    out = run(step, (jnp.float32(1.0), jnp.float32(1.0), jnp.int32(0)), key=0, steps=6, chunk=4)
    x, y = 1.0, 1.0
    expected = []
    for t in range(6):
        if t % 2 == 0:
            x = x - 0.1 * y
        else:
            y = y + 0.1 * x
        expected.append(x * y)
    np.testing.assert_allclose(out.history["value"], expected, rtol=1e-6)
    assert set(out.history) == {"value", "players/x", "players/y"}
    assert int(out.state[2]) == 6


def test_run_rejects_bad_arguments_before_compute():
    from impl.training import run

    with pytest.raises(TypeError, match="step_fn"):
        run("not a function", {}, key=0, steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        run(lambda s, b, k: (s, {}), {}, None, key=0, steps=1, batch_size=4)
    with pytest.raises(ValueError, match="steps"):
        run(lambda s, b, k: (s, {}), {}, key=0, steps=0)


def test_run_stops_a_diverging_step_with_its_step_and_metric():
    from impl.training import run

    def step(state, batch, key):
        del batch, key
        return state + 1.0, {"score": jnp.log(4.0 - state)}  # log(0) when state = 4, i.e. at step 5

    with pytest.raises(TrainingDiverged, match=r"step 5: score = -inf"):
        run(step, jnp.float32(0.0), key=0, steps=10, chunk=3)

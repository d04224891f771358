"""The train state: arrays only, so it checkpoints cleanly and `jax.tree` works on it."""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """step: scalar int32; params / batch_stats: the model's collections; opt_state: optax state;
  warmed_up: scalar bool, True once an "error" warm-up has ended (unused by other warm-ups)."""
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: optax.OptState
  warmed_up: jax.Array


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       image_shape: tuple[int, ...]) -> TrainState:
  """Initialises the model on a [1, *image_shape] dummy batch and the optimizer on its params."""
  variables = model.init(rng, jnp.zeros((1,) + tuple(image_shape), jnp.float32))
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                    warmed_up=jnp.zeros((), jnp.bool_))


def num_params(params) -> int:
  return sum(int(p.size) for p in jax.tree.leaves(params))

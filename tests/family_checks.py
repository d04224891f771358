"""Checks that every residual family must pass, shared by the families' test files: the analyses
on a tiny net (against the invariants test_analysis.py proves for the ResNets), a block's output
with its branch deleted, and one stochastic-depth train step."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import test_analysis
import test_train
import tolerances
from test_analysis import IMAGE_SHAPE, make_net

from resnet_jax import analysis, parallel
from resnet_jax.models import BlockControls


def check_analyses(name, **kwargs):
  """Responses, single lesions and exact path gradients of a tiny net (<= 4 blocks).

  The exact per-length gradients must equal the brute-force sum over all 2^n routes, and add up
  to the ordinary gradient at the first block's input.
  """
  model, variables, images, labels = make_net(name, **kwargs)
  n = model.num_blocks
  stds = analysis.response_std(model, variables, images)
  assert list(stds) == analysis.response_layer_names(model, variables, IMAGE_SHAPE)
  assert all(v > 0 for v in stds.values())
  single = analysis.lesion_single(model, variables, images, labels)
  assert single.shape == (n,) and np.all((single >= 0) & (single <= 1))
  exact = analysis.exact_path_gradients(model, variables, images, labels)
  routes = np.array(list(itertools.product([0, 1], repeat=n)))
  per_route = analysis.single_path_gradients(model, variables, images, labels, routes)
  brute = np.stack([per_route[routes.sum(1) == k].sum(0) for k in range(n + 1)])
  # The longest sums: the tiny nets' convs over at most 9 * 64 inputs (and the 2^n routes).
  tolerances.assert_close(exact.grads, brute, terms=9 * 64)
  full = test_analysis.loss_grad_at_block_input(model, variables, images, labels)
  tolerances.assert_close(exact.grads.sum(0), full, terms=9 * 64)
  return stds


def branch_deleted(block, x, train=False, **apply_kwargs):
  """A block's output with its branch's gate at 0 (its shortcut alone), all variables ones."""
  shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), x, None, False))
  variables = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)
  ctrl = BlockControls.default(1).at(0).replace(gate=jnp.zeros(()))
  return block.apply(variables, x, ctrl, train, **apply_kwargs)


def check_train_steps(model, num_steps=2):
  """`num_steps` compiled train steps (steps.train_step: 'minibatch' and 'dropout' rngs) of a net
  on 8x8 one-channel images, on two devices with per-device BatchNorm (where stochastic depth's
  skipped branches once failed to trace); returns the losses."""
  config = test_train.tiny_config(batch_size=8)
  mesh = parallel.make_mesh(jax.devices()[:2])
  compiled, state = test_train.make_step(config, model, mesh, per_device_bn=True)
  repl = parallel.replicated(mesh)
  images = np.asarray(jax.random.normal(jax.random.key(1), (16, 8, 8, 1)))
  data = {"image": parallel.put_global(images, repl),
          "label": parallel.put_global(np.arange(16, dtype=np.int32) % 10, repl)}
  keys = jax.device_put((jax.random.key(2), jax.random.key(3)), repl)
  losses = []
  for _ in range(num_steps):
    state, metrics = compiled(state, data, *keys)
    losses.append(float(metrics["loss"]))
  assert int(state.step) == num_steps and np.all(np.isfinite(losses))
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(state.params))
  return losses

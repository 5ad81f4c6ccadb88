"""Every key of configs/base.yaml is either bound by a run (fcn.run.RUN_BOUND_KEYS) or free
(fcn.run.FREE_KEYS): a new key cannot slip through unclassified."""
from fcn import run
from fcn.config import BASE_CONFIG, _flatten, _load_chain


def test_every_base_key_is_run_bound_or_free():
    keys = set(_flatten(_load_chain(BASE_CONFIG)))
    bound, free = set(run.RUN_BOUND_KEYS), set(run.FREE_KEYS)
    assert not bound & free, 'in both lists: %s' % sorted(bound & free)
    assert sorted(keys - bound - free) == [], 'in neither fcn.run list'
    assert sorted((bound | free) - keys) == [], 'listed but not in configs/base.yaml'


def test_the_keys_that_shape_the_network_are_run_bound():
    keys = set(_flatten(_load_chain(BASE_CONFIG)))
    model_keys = {key for key in keys if key.startswith('model.')}
    assert model_keys <= set(run.RUN_BOUND_KEYS)
    assert {'train.ema_decay', 'data.num_classes'} <= set(run.RUN_BOUND_KEYS)

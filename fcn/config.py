"""YAML configuration: inheritance (`base:`), `--set a.b=value` overrides, validation.

`configs/base.yaml` is the schema: every valid key appears there with its default. It and
every shipped recipe are package data, `fcn/configs/` (in the repository a link to configs/,
in a wheel a copy of it), so configs load after a plain `pip install .` too, and `--config
voc.yaml` names a shipped recipe when no such file is in the working directory. Every config
inherits its defaults. A config names its parent with `base: other.yaml`, resolved relative
to the file that names it; keys are merged depth-first. Unknown keys and values of the wrong
type are errors that name the key and suggest the closest valid one.

The schema gives each key its type (that of its default); the value checks (choices,
ranges, nullable types, multiples of 32) are declared once, in CHECKS at the end of this
module, and the checks that relate two keys in CROSS_CHECKS. Every loaded config passes
them, so the library code reads checked values.
"""
import copy
import difflib
import os

import yaml

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')
BASE_CONFIG = os.path.join(SHIPPED_DIR, 'base.yaml')
INHERIT_KEY = 'base'


class ConfigError(ValueError):
    """A user mistake in a config file or a --set override."""


class Config(dict):
    """A nested dict whose keys also read as attributes: cfg.train.steps."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError('config has no key %r' % name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __deepcopy__(self, memo):
        copied = _to_config(copy.deepcopy(_to_plain(self), memo))
        if 'origin' in self.__dict__:
            object.__setattr__(copied, 'origin', self.origin)
        return copied

    def to_dict(self):
        return _to_plain(self)


def _to_config(value):
    if isinstance(value, dict):
        return Config({k: _to_config(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_to_config(v) for v in value]
    return value


def _to_plain(value):
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value


def shipped_configs():
    """The bare names of the shipped configs (voc.yaml, demo.yaml, ...)."""
    return sorted(name for name in os.listdir(SHIPPED_DIR) if name.endswith('.yaml'))


def find_config(name):
    """The config file `name`: the file itself where it exists, else the shipped config of that
    bare name (`voc.yaml` or `voc`), else a ConfigError listing the shipped ones."""
    if os.path.isfile(name):
        return name
    if not os.path.dirname(name):
        for candidate in (name, name + '.yaml'):
            if candidate in shipped_configs():
                return os.path.join(SHIPPED_DIR, candidate)
    raise ConfigError('config file not found: %s (a shipped config is named by its bare name: %s)'
                      % (name, ', '.join(shipped_configs())))


def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError('config file not found: %s' % path)
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError('%s is not valid YAML: %s' % (path, e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError('%s must hold a mapping of sections, got %s' % (path, type(data).__name__))
    return data


def _merge(base, override):
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_chain(path, seen=()):
    """Reads `path` and its `base:` ancestors, merged with the child winning."""
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError('config inheritance loops back to %s' % path)
    data = _read_yaml(path)
    parent = data.pop(INHERIT_KEY, None)
    if parent is None:
        return data
    parent_path = _parent_path(path, parent)
    return _merge(_load_chain(parent_path, seen + (path,)), data)


def _parent_path(path, parent):
    """The file named by `base: parent` in `path`, relative to `path`'s folder."""
    if not isinstance(parent, str) or not parent:
        raise ConfigError('%s: %s: must name a config file, got %r' % (path, INHERIT_KEY, parent))
    parent_path = os.path.join(os.path.dirname(path), os.path.expanduser(parent))
    if os.path.isfile(parent_path):
        return parent_path
    hint = ''
    if os.path.basename(parent) == os.path.basename(BASE_CONFIG):
        hint = ('; every config inherits the shipped defaults (%s) anyway: drop the line, or name '
                'the file relative to %s' % (BASE_CONFIG, os.path.dirname(path)))
    raise ConfigError('%s: %s: %s not found (looked for %s, relative to the file that names it)%s'
                      % (path, INHERIT_KEY, parent, os.path.abspath(parent_path), hint))


def _flatten(tree, prefix=''):
    flat = {}
    for key, value in tree.items():
        dotted = prefix + key
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted + '.'))
        else:
            flat[dotted] = value
    return flat


def _suggest(key, valid_keys):
    close = difflib.get_close_matches(key, valid_keys, n=1, cutoff=0.5)
    if not close:
        leaf = key.rsplit('.', 1)[-1]
        close = [k for k in valid_keys if k.rsplit('.', 1)[-1] == leaf][:1]
    return ' (did you mean %r?)' % close[0] if close else ''


def _coerce(key, value, default, source):
    """Checks `value` against the type of the schema default; ints widen to floats. Keys
    whose CHECKS entry reads its own types (e.g. train.crop_size: 512 or [h, w]) pass as is."""
    if default is None or value is None or (key in CHECKS and CHECKS[key].own_types):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-4" as a string
            except ValueError:
                pass
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, list):
        if isinstance(value, list):
            return value
    elif isinstance(value, type(default)):
        return value
    raise ConfigError('%s: %s must be %s, got %r (%s)' % (
        source, key, _type_name(default), value, type(value).__name__))


def _type_name(default):
    if isinstance(default, bool):
        return 'true or false'
    return {float: 'a number', int: 'an integer', list: 'a list', str: 'a string'}.get(type(default), type(default).__name__)


def _validate(tree, schema, source):
    flat_schema = _flatten(schema)
    section_names = {k.rsplit('.', 1)[0] for k in flat_schema if '.' in k}
    for key, value in _flatten(tree).items():
        if key in flat_schema:
            continue
        if key in section_names and value in ({}, None):
            continue
        raise ConfigError('%s: unknown key %r%s' % (source, key, _suggest(key, sorted(flat_schema))))
    return flat_schema


def _set_dotted(tree, dotted, value):
    node = tree
    parts = dotted.split('.')
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError('--set %s: %s is not a section' % (dotted, part))
    node[parts[-1]] = value


def parse_override(text):
    """'train.steps=100' -> ('train.steps', 100); the value is read as YAML (typed)."""
    if '=' not in text:
        raise ConfigError('--set expects KEY=VALUE (e.g. train.steps=1000), got %r' % text)
    key, raw = text.split('=', 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(path, overrides=(), schema_path=BASE_CONFIG):
    """Loads `path` (with inheritance), applies `--set` overrides, validates and types it."""
    schema = _load_chain(schema_path)
    path = find_config(path)
    tree = _merge(schema, _load_chain(path))
    _validate(tree, schema, path)
    flat_schema = _flatten(schema)
    for key, value in _flatten(tree).items():
        if key in flat_schema:
            _set_dotted(tree, key, _coerce(key, value, flat_schema[key], path))
    sources = {}
    for text in overrides:
        key, value = parse_override(text)
        _validate_key(key, schema, '--set')
        _set_dotted(tree, key, _coerce(key, value, flat_schema[key], '--set'))
        sources[key] = '--set'
    config = _to_config(tree)
    check_values(config, lambda key: sources.get(key, path))
    object.__setattr__(config, 'origin', Origin(path, frozenset(sources)))
    return config


class Origin(tuple):
    """Where a loaded config came from: its file and the keys a --set override gave."""
    __slots__ = ()

    def __new__(cls, path, set_keys=frozenset()):
        return tuple.__new__(cls, (path, frozenset(set_keys)))

    path = property(lambda self: self[0])
    set_keys = property(lambda self: self[1])


def origin(cfg):
    """The Origin of a config loaded by load_config (an empty one for a config built otherwise)."""
    return cfg.__dict__.get('origin') or Origin(None)


def sets_key(path, overrides, key):
    """True when `key` is given by a --set override or by a config file of `path`'s chain other
    than the shipped base.yaml (whose value is only the default)."""
    if any(parse_override(text)[0] == key for text in overrides):
        return True
    path = os.path.abspath(find_config(path))
    while True:
        data = _read_yaml(path)
        if os.path.realpath(path) != os.path.realpath(BASE_CONFIG) and key in _flatten(data):
            return True
        parent = data.get(INHERIT_KEY)
        if parent is None:
            return False
        path = _parent_path(path, parent)


def _validate_key(key, schema, source):
    flat_schema = _flatten(schema)
    if key not in flat_schema:
        raise ConfigError('%s: unknown key %r%s' % (source, key, _suggest(key, sorted(flat_schema))))


def save_config(cfg, path):
    """Writes the resolved config (what actually ran) as YAML."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        yaml.safe_dump(_to_plain(cfg), f, sort_keys=False, default_flow_style=None)
    os.replace(tmp, path)


def add_config_args(parser):
    """The --config / --set flags shared by every script."""
    parser.add_argument('--config', required=True, help='YAML config (inherits configs/base.yaml)')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='override a config key, e.g. --set train.steps=1000 (repeatable)')
    return parser


# --- value checks, declared once ---------------------------------------------------------------
# configs/base.yaml gives every key its type; CHECKS gives the keys whose values are further
# constrained what is valid, in words (for the error) and as a predicate. An error names the
# source, the key, what is valid and the value: "--set: train.crop_size must be ..., got 100".

STRIDE = 32  # the FCN output stride: training crops are multiples of it


class Check:
    """`valid(value)` -> bool; `text` says what is valid. `own_types`: the predicate checks
    the type itself, instead of the schema default's type (for keys that take several)."""

    def __init__(self, text, valid, own_types=False, explain=None):
        self.text = text
        self.valid = valid
        self.own_types = own_types
        self.explain = explain  # (value) -> a message naming the faulty part, for structured values

    def problem(self, key, value):
        """None when `value` is valid, else what is wrong with it (naming the key and the value)."""
        if self(value):
            return None
        return (self.explain and self.explain(value)) or '%s must be %s, got %r' % (key, self.text, value)

    def __call__(self, value):
        try:
            return bool(self.valid(value))
        except (TypeError, ValueError):
            return False


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def one_of(*choices):
    return Check('one of %s' % ', '.join(str(c) for c in choices), lambda v: v in choices)


def positive_int():
    return Check('an integer >= 1', lambda v: _is_int(v) and v >= 1)


def non_negative_int():
    return Check('an integer >= 0', lambda v: _is_int(v) and v >= 0)


def positive():
    return Check('a number > 0', lambda v: _is_number(v) and v > 0)


def non_negative():
    return Check('a number >= 0', lambda v: _is_number(v) and v >= 0)


def fraction(low_open=True, high_open=False):
    """A number in (0, 1], [0, 1), ... as the flags say."""
    text = '%s0, 1%s' % ('(' if low_open else '[', ')' if high_open else ']')
    return Check('a number in ' + text, lambda v: _is_number(v) and (v > 0 if low_open else v >= 0)
                 and (v < 1 if high_open else v <= 1))


def nullable(check):
    return Check('null or %s' % check.text, lambda v: v is None or check(v), own_types=True)


def crop_size(value):
    """train.crop_size -> (height, width): 512 means (512, 512); [h, w] (or (h, w)) is taken as is."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _is_crop_size(value):
    def is_side(side):
        return _is_int(side) and side > 0 and side % STRIDE == 0
    if isinstance(value, list):
        return len(value) == 2 and all(is_side(side) for side in value)
    return is_side(value)


def _is_scale_list(value):
    return isinstance(value, list) and value and all(_is_number(s) and s > 0 for s in value)


def _is_lr_multipliers(value):
    return isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and _is_number(pair[1])
        for pair in value)


# The choice tuples, owned here: fcn.nets.fcn, fcn.optim and fcn.losses import them.
MODEL_NAMES = ('fcn32s', 'fcn16s', 'fcn8s')
UPSAMPLE_MODES = ('learnable', 'per_class', 'fixed')
LOSS_NORMALIZATIONS = ('valid_pixels', 'sum')
SUMMABLE_LOSSES = ('cross_entropy', 'focal')  # the loss.terms that are sums over pixels: loss.normalization sum
LR_SCHEDULES = ('fixed', 'poly', 'step', 'exponential', 'cosine')
OPTIMIZERS = ('momentum', 'sgd', 'adam', 'rmsprop')
CLASS_WEIGHT_METHODS = ('median_frequency', 'inverse_frequency', 'none')
LOSS_NAMES = ('cross_entropy', 'dice', 'focal', 'lovasz')
# the options a loss term takes besides name and weight, with their defaults
LOSS_TERM_OPTIONS = {'cross_entropy': {}, 'dice': {}, 'focal': {'gamma': 2.0}, 'lovasz': {}}
_TERMS_EXAMPLE = '[{name: cross_entropy, weight: 1.0}, {name: dice, weight: 0.5}]'


def _loss_terms_problem(terms):
    """None, or what is wrong with loss.terms: the first faulty term, its key and its value."""
    if not isinstance(terms, list) or not terms:
        return 'loss.terms must be a non-empty list of {name: ..., weight: ...}, e.g. %s; got %r' % (
            _TERMS_EXAMPLE, terms)
    seen = set()
    for index, term in enumerate(terms):
        problem = _loss_term_problem('loss.terms[%d]' % index, term, seen)
        if problem:
            return problem
    if all(_yaml_float(term.get('weight', 1.0)) == 0 for term in terms):
        return 'loss.terms: every weight is 0, so nothing would be trained; give one term a weight > 0'
    return None


def _loss_term_problem(key, term, seen):
    if not isinstance(term, dict) or 'name' not in term:
        return '%s must be a mapping with a name (one of %s) and a weight, e.g. {name: dice, weight: 1.0}; got %r' % (
            key, ', '.join(LOSS_NAMES), term)
    name = term['name']
    if name not in LOSS_NAMES:
        return '%s.name must be one of %s, got %r%s' % (key, ', '.join(LOSS_NAMES), name, _suggest_word(name))
    if name in seen:
        return '%s: %s is listed twice; give each loss once, with its weight' % (key, name)
    seen.add(name)
    valid = ('name', 'weight') + tuple(LOSS_TERM_OPTIONS[name])
    unknown = [option for option in term if option not in valid]
    if unknown:
        return '%s (%s): unknown option %s: %r (valid: %s)' % (key, name, unknown[0], term[unknown[0]], ', '.join(valid))
    for option in ('weight',) + tuple(LOSS_TERM_OPTIONS[name]):
        value = _yaml_float(term.get(option, 0.0))
        if not (_is_number(value) and value >= 0):
            return '%s.%s (%s) must be a number >= 0, got %r' % (key, option, name, value)
    return None


def _yaml_float(value):
    """A number as is; a string YAML 1.1 left unread ("1e-4") as its float; anything else as is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _suggest_word(word):
    close = difflib.get_close_matches(str(word), LOSS_NAMES, n=1, cutoff=0.5)
    return ' (did you mean %r?)' % close[0] if close else ''

CHECKS = {
    'data.num_classes': nullable(positive_int()),
    'data.num_readers': positive_int(),
    'data.num_preprocess_threads': positive_int(),
    'data.shuffle_capacity': positive_int(),
    'augment.min_scale': positive(),
    'augment.max_scale': positive(),
    'augment.scale_step': non_negative(),
    'augment.brightness': non_negative(),
    'augment.contrast': fraction(low_open=False),
    'augment.saturation': fraction(low_open=False),
    'augment.hue': Check('a number in [0, 0.5]', lambda v: _is_number(v) and 0 <= v <= 0.5),
    'model.name': one_of(*MODEL_NAMES),
    'model.width': positive(),
    'model.dropout_keep_prob': fraction(),
    'model.weight_decay': non_negative(),
    'model.upsample': one_of(*UPSAMPLE_MODES),
    'train.steps': positive_int(),
    'train.batch_size': positive_int(),
    'train.crop_size': Check('a positive multiple of %d, or [height, width] of such (e.g. 512 or [512, 1024])'
                             % STRIDE, _is_crop_size, own_types=True),
    'train.learning_rate': non_negative(),  # 0: a step that only restores and saves (tests do)
    'train.lr_schedule': one_of(*LR_SCHEDULES),
    'train.lr_power': positive(),
    'train.end_learning_rate': non_negative(),
    'train.momentum': fraction(low_open=False, high_open=True),
    'train.optimizer': one_of(*OPTIMIZERS),
    'train.warmup_steps': non_negative_int(),
    'train.warmup_start_factor': fraction(low_open=False),
    'train.decay_steps': positive_int(),
    'train.decay_rate': positive(),
    'train.clip_gradient_norm': non_negative(),
    'train.ema_decay': fraction(low_open=False, high_open=True),
    'train.lr_multipliers': Check('a list of [scope, factor] pairs, e.g. [[vgg_16/fc8, 10.0]]', _is_lr_multipliers),
    'train.bias_lr_multiplier': non_negative(),
    'train.save_every_steps': positive_int(),
    'train.keep_checkpoints': positive_int(),
    'train.summary_every_steps': positive_int(),
    'train.log_every_steps': positive_int(),
    'train.seed': nullable(non_negative_int()),
    'train.accumulate_steps': positive_int(),
    'loss.class_weights': Check(
        'null, a list of numbers >= 0, or one of %s' % ', '.join(CLASS_WEIGHT_METHODS),
        lambda v: v is None or v in CLASS_WEIGHT_METHODS or (
            isinstance(v, list) and all(_is_number(w) and w >= 0 for w in v)), own_types=True),
    'loss.terms': Check('a non-empty list of {name: ..., weight: ...} (names: %s), e.g. %s'
                        % (', '.join(LOSS_NAMES), _TERMS_EXAMPLE), lambda v: _loss_terms_problem(v) is None,
                        own_types=True, explain=_loss_terms_problem),
    'loss.top_k_percent': fraction(),
    'loss.hard_mining_anneal_steps': non_negative_int(),
    'loss.normalization': one_of(*LOSS_NORMALIZATIONS),
    'eval.max_images': nullable(positive_int()),
    'eval.interval_secs': non_negative(),
    'eval.timeout_secs': nullable(non_negative()),
    'eval.max_evals': nullable(positive_int()),
    'eval.fscore_beta': positive(),
    'eval.scales': Check('a non-empty list of positive numbers, e.g. [0.75, 1.0, 1.25]', _is_scale_list),
    'deploy.num_clones': positive_int(),
    'deploy.replicas_to_aggregate': nullable(positive_int()),
}


def _batch_splits_over_clones(cfg):
    if cfg.train.batch_size % cfg.deploy.num_clones:
        return ('train.batch_size', 'train.batch_size %d must be divisible by deploy.num_clones %d (each clone '
                'takes an equal share)' % (cfg.train.batch_size, cfg.deploy.num_clones))
    return None


def _scale_range(cfg):
    if cfg.augment.min_scale > cfg.augment.max_scale:
        return ('augment.min_scale', 'augment.min_scale %r must be <= augment.max_scale %r'
                % (cfg.augment.min_scale, cfg.augment.max_scale))
    return None


def _deterministic_needs_seed(cfg):
    if cfg.train.deterministic and cfg.train.seed is None:
        return ('train.deterministic', 'train.deterministic needs train.seed (an integer): the same seed '
                'gives the same run')
    return None


def _normalization_fits_the_loss(cfg):
    """loss.normalization sum divides a sum over pixels by the batch size: dice and lovasz are
    ratios over the batch and hard-pixel mining a mean over the pixels it keeps."""
    loss = cfg.loss
    if loss.get('normalization') != 'sum':
        return None
    ratios = [term['name'] for term in loss.terms if term['name'] not in SUMMABLE_LOSSES]
    if ratios:
        return ('loss.normalization', 'loss.normalization sum needs losses that are sums over pixels (%s); loss.terms '
                'has %s (a ratio over the whole batch): use loss.normalization valid_pixels or drop it'
                % (', '.join(SUMMABLE_LOSSES), ', '.join(ratios)))
    if _yaml_float(loss.top_k_percent) < 1.0:
        return ('loss.normalization', 'loss.normalization sum cannot be combined with loss.top_k_percent %r < 1: '
                'hard-pixel mining averages the pixels it keeps; use one or the other' % (loss.top_k_percent,))
    return None


# Checks that relate two keys: (cfg) -> None, or (key, message) naming both values.
CROSS_CHECKS = (_batch_splits_over_clones, _scale_range, _deterministic_needs_seed, _normalization_fits_the_loss)


def check_value(key, value, source='config'):
    """Raises ConfigError unless `value` is valid for `key` (keys without a check pass)."""
    check = CHECKS.get(key)
    problem = None if check is None else check.problem(key, value)
    if problem:
        raise ConfigError('%s: %s' % (source, problem))


def check_values(cfg, source_of=lambda key: 'config'):
    """Checks every key of a loaded config against CHECKS, then CROSS_CHECKS."""
    flat = _flatten(_to_plain(cfg))
    for key in CHECKS:
        if key in flat:
            check_value(key, flat[key], source_of(key))
    for cross_check in CROSS_CHECKS:
        problem = cross_check(cfg)
        if problem is not None:
            key, message = problem
            raise ConfigError('%s: %s' % (source_of(key), message))


def require(cfg, key, check, purpose):
    """A stricter check of `key` for one use (e.g. ImageNet classification needs 1000
    classes): ConfigError naming the key, the value, what is valid and why."""
    value = _flatten(_to_plain(cfg)).get(key)
    if not check(value):
        raise ConfigError('%s needs %s to be %s, got %r' % (purpose, key, check.text, value))

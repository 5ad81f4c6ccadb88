"""YAML configuration: inheritance (`base:`), `--set a.b=value` overrides, validation.

`configs/base.yaml` is the schema: every valid key appears there with its default. It ships
inside the package as `fcn/configs/base.yaml` (in the repository a link to configs/base.yaml,
in a wheel a copy of it), so configs load after a plain `pip install .` too. Every config
inherits its defaults. A config names its parent with `base: other.yaml`, resolved relative
to the file that names it; keys are merged depth-first. Unknown keys and values of the wrong
type are errors that name the key and suggest the closest valid one.
"""
import copy
import difflib
import os

import yaml

BASE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', 'base.yaml')
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
        return _to_config(copy.deepcopy(_to_plain(self), memo))

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
    """Checks `value` against the type of the schema default; ints widen to floats."""
    if default is None or value is None:
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
    tree = _merge(schema, _load_chain(path))
    _validate(tree, schema, path)
    flat_schema = _flatten(schema)
    for key, value in _flatten(tree).items():
        if key in flat_schema:
            _set_dotted(tree, key, _coerce(key, value, flat_schema[key], path))
    for text in overrides:
        key, value = parse_override(text)
        _validate_key(key, schema, '--set')
        _set_dotted(tree, key, _coerce(key, value, flat_schema[key], '--set'))
    return _to_config(tree)


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

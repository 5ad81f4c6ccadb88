"""Which process of a training job this is: its role, from TF_CONFIG or a Slurm step.

No TensorFlow import (fcn.launch, which only builds TF_CONFIG, uses this module and starts
fast); tests/test_cluster.py checks it in a fresh interpreter.

A cluster job runs the same `train.py` in every process; each learns its role from
  - TF_CONFIG (Kubernetes TFJob, fcn.launch), e.g.
    {"cluster": {"worker": ["h0:2222", "h1:2222"], "ps": ["h2:2222"]},
     "task": {"type": "worker", "index": 1}}
    Roles: 'chief', 'worker', 'ps', 'evaluator' ('master', an older name of the chief, is
    read as 'chief'). Without a 'chief' job, worker 0 is the chief. The evaluator is not
    part of the training cluster and starts no server.
  - or a Slurm step of several tasks (`srun`): ranks 0..FCN_NUM_PS-1 are parameter servers,
    the others workers (worker 0 = chief); a task's port is FCN_PORT_BASE (default 8888)
    plus its index on its node. This is the layout of
    tf.distribute.cluster_resolver.SlurmClusterResolver(jobs={'ps': P, 'worker': W}), read
    here from SLURM_* variables because the resolver reads only os.environ, sets
    CUDA_VISIBLE_DEVICES as a side effect, and needs nvidia-smi or gpus_per_node >= tasks
    per node (it fails on CPU-only nodes). Its node-list syntax is parsed here too
    (`expand_hostlist`, `expand_tasks_per_node`), so that no TensorFlow import is needed.

What each role then does is decided in one place, fcn.task.
"""
import dataclasses
import json
import os
import re

TASK_TYPES = ('chief', 'worker', 'ps', 'evaluator')
TRAINING_JOBS = ('chief', 'worker', 'ps')
ALIASES = {'master': 'chief'}
SLURM_NUM_PS = 'FCN_NUM_PS'
SLURM_PORT_BASE = 'FCN_PORT_BASE'
DEFAULT_PORT_BASE = 8888


class ClusterError(ValueError):
    """A cluster description (TF_CONFIG, Slurm environment) that cannot be trained with."""


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """This process's role in the job. cluster_spec: {job name: ['host:port', ...]}."""
    task_type: str
    task_index: int
    cluster_spec: dict
    rpc_layer: str = 'grpc'

    @property
    def is_chief(self):
        """The chief initialises variables and writes checkpoints and summaries."""
        if self.task_type == 'chief':
            return True
        return self.task_type == 'worker' and self.task_index == 0 and 'chief' not in self.cluster_spec

    @property
    def num_workers(self):
        """Training processes (chief + workers): the replicas whose gradients are aggregated."""
        return len(self.cluster_spec.get('chief', [])) + len(self.cluster_spec.get('worker', []))

    @property
    def worker_rank(self):
        """This training process's place among chief + workers (chief 0): distinct per
        process, so per-process random seeds differ."""
        offset = 1 if self.task_type == 'worker' and 'chief' in self.cluster_spec else 0
        return self.task_index + offset

    @property
    def num_ps(self):
        return len(self.cluster_spec.get('ps', []))

    @property
    def training_spec(self):
        """The jobs whose servers form the training cluster (the evaluator is not one)."""
        return {job: list(self.cluster_spec[job]) for job in TRAINING_JOBS if job in self.cluster_spec}

    @property
    def address(self):
        return self.cluster_spec[self.task_type][self.task_index]

    @property
    def master(self):
        """Session target of this task's server, e.g. 'grpc://host:2222'."""
        return '%s://%s' % (self.rpc_layer, self.address)


def is_chief(info):
    """True for the chief, and for a single process (info None)."""
    return info is None or info.is_chief


def resolve(environ=os.environ):
    """ClusterInfo from TF_CONFIG, else from a Slurm step of several tasks; None when this is
    a single process (neither is set, TF_CONFIG is '{}', or the cluster is one lone task)."""
    text = environ.get('TF_CONFIG', '').strip()
    if text:
        info = parse_tf_config(text)
    elif _slurm_num_tasks(environ) > 1:
        info = from_slurm(environ)
    else:
        return None
    if info is None or _is_lone_task(info):
        return None
    return info


def _is_lone_task(info):
    return info.task_type in ('chief', 'worker') and info.num_workers == 1 and info.num_ps == 0


def parse_tf_config(text):
    """TF_CONFIG JSON -> ClusterInfo (None for '{}'). Raises ClusterError naming the problem."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ClusterError('TF_CONFIG is not valid JSON (%s): %s' % (e, _clip(text))) from None
    if not isinstance(config, dict):
        raise ClusterError('TF_CONFIG must be a JSON object, got %s' % _clip(text))
    if not config:
        return None
    for key in ('cluster', 'task'):
        if not isinstance(config.get(key), dict):
            raise ClusterError('TF_CONFIG needs a %r object, got %s' % (key, _clip(text)))
    spec = _parse_cluster(config['cluster'])
    task_type, task_index = _parse_task(config['task'], spec)
    return ClusterInfo(task_type, task_index, spec, config.get('rpc_layer') or 'grpc')


def _clip(text, limit=200):
    return repr(text if len(text) <= limit else text[:limit] + '...')


def _parse_cluster(cluster):
    spec = {}
    for job, addresses in cluster.items():
        name = ALIASES.get(job.lower(), job.lower())
        if name not in TASK_TYPES:
            raise ClusterError('TF_CONFIG cluster has an unknown job %r (expected one of %s)'
                               % (job, ', '.join(TASK_TYPES)))
        if not isinstance(addresses, list) or not all(_is_address(a) for a in addresses):
            raise ClusterError("TF_CONFIG cluster job %r must list 'host:port' strings, got %r" % (job, addresses))
        spec[name] = list(addresses)
    validate_cluster_spec(spec)
    return spec


def _is_address(address):
    host, _, port = address.rpartition(':') if isinstance(address, str) else ('', '', '')
    return bool(host) and port.isdigit()


def validate_cluster_spec(spec):
    """Checks a {job: [addresses]} dict can train: one chief at most, some trainer, and
    parameter servers when there is more than one training process."""
    if len(spec.get('chief', [])) > 1:
        raise ClusterError('a cluster has at most one chief, got %d: %r' % (len(spec['chief']), spec['chief']))
    trainers = len(spec.get('chief', [])) + len(spec.get('worker', []))
    if trainers == 0:
        raise ClusterError('the cluster has no chief or worker task: %r' % (spec,))
    if trainers > 1 and not spec.get('ps'):
        raise ClusterError('the cluster has %d training tasks but no ps task; fcn trains across '
                           'processes with parameter servers: add a "ps" job' % trainers)


def _parse_task(task, spec):
    raw_type = task.get('type')
    task_type = ALIASES.get(str(raw_type).lower(), str(raw_type).lower())
    if task_type not in TASK_TYPES:
        raise ClusterError('TF_CONFIG task has an unknown type %r (expected one of %s)'
                           % (raw_type, ', '.join(TASK_TYPES)))
    index = task.get('index', 0)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ClusterError('TF_CONFIG task index must be an integer >= 0, got %r' % (index,))
    if task_type not in spec:
        if task_type == 'evaluator':
            return task_type, index
        raise ClusterError('TF_CONFIG task type %r is not a job of the cluster (jobs: %s)'
                           % (raw_type, ', '.join(sorted(spec))))
    if index >= len(spec[task_type]):
        raise ClusterError('TF_CONFIG task index %d is out of range: the cluster has %d %r task(s)'
                           % (index, len(spec[task_type]), task_type))
    return task_type, index


def make_tf_config(cluster_spec, task_type, task_index):
    """The TF_CONFIG JSON for one task of `cluster_spec` (what fcn.launch hands each process)."""
    return json.dumps({'cluster': cluster_spec, 'task': {'type': task_type, 'index': task_index}})


def _slurm_num_tasks(environ):
    value = environ.get('SLURM_STEP_NUM_TASKS', '')
    return int(value) if value.isdigit() else 0


def from_slurm(environ=os.environ):
    """ClusterInfo of this task of a Slurm step (srun), from SLURM_PROCID,
    SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE, plus FCN_NUM_PS
    (parameter servers, default 0) and FCN_PORT_BASE (default 8888)."""
    rank = _slurm_int(environ, 'SLURM_PROCID')
    num_tasks = _slurm_int(environ, 'SLURM_STEP_NUM_TASKS')
    num_ps = _slurm_int(environ, SLURM_NUM_PS, default=0)
    port_base = _slurm_int(environ, SLURM_PORT_BASE, default=DEFAULT_PORT_BASE)
    addresses = _slurm_addresses(environ, port_base)
    if len(addresses) != num_tasks:
        raise ClusterError('SLURM_STEP_TASKS_PER_NODE=%r places %d tasks but SLURM_STEP_NUM_TASKS=%d'
                           % (environ['SLURM_STEP_TASKS_PER_NODE'], len(addresses), num_tasks))
    if not 0 <= rank < num_tasks:
        raise ClusterError('SLURM_PROCID=%d is out of range for %d tasks' % (rank, num_tasks))
    if not 0 <= num_ps < num_tasks:
        raise ClusterError('%s=%d must be >= 0 and leave a worker among the step\'s %d tasks'
                           % (SLURM_NUM_PS, num_ps, num_tasks))
    spec = {'ps': addresses[:num_ps], 'worker': addresses[num_ps:]} if num_ps else {'worker': addresses}
    validate_cluster_spec(spec)
    _check_own_address(environ, addresses[rank], port_base)
    if rank < num_ps:
        return ClusterInfo('ps', rank, spec)
    return ClusterInfo('worker', rank - num_ps, spec)


def _slurm_int(environ, name, default=None):
    value = environ.get(name)
    if value is None:
        if default is None:
            raise ClusterError('%s is not set: not inside a Slurm step (srun)?' % name)
        return default
    try:
        return int(value)
    except ValueError:
        raise ClusterError('%s must be an integer, got %r' % (name, value)) from None


def _slurm_addresses(environ, port_base):
    """'host:port' of every task in rank order: node by node in node-list order (Slurm's
    node lists are sorted, as SlurmClusterResolver sorts them), port_base + index on the node."""
    for name in ('SLURM_STEP_NODELIST', 'SLURM_STEP_TASKS_PER_NODE'):
        if not environ.get(name):
            raise ClusterError('%s is not set: not inside a Slurm step (srun)?' % name)
    try:
        hosts = expand_hostlist(environ['SLURM_STEP_NODELIST'])
        counts = expand_tasks_per_node(environ['SLURM_STEP_TASKS_PER_NODE'])
    except ValueError as e:
        raise ClusterError('cannot read the Slurm node list: %s' % e) from None
    if len(hosts) != len(counts):
        raise ClusterError('SLURM_STEP_NODELIST=%r names %d nodes but SLURM_STEP_TASKS_PER_NODE=%r gives %d counts'
                           % (environ['SLURM_STEP_NODELIST'], len(hosts), environ['SLURM_STEP_TASKS_PER_NODE'],
                              len(counts)))
    return ['%s:%d' % (host, port_base + i) for host, count in zip(hosts, counts) for i in range(count)]


def _check_own_address(environ, address, port_base):
    """Ranks are laid out node by node (Slurm's default block distribution); a task whose
    node and local id disagree with that layout would serve on another task's address."""
    node, local_id = environ.get('SLURMD_NODENAME'), environ.get('SLURM_LOCALID')
    if node is None or local_id is None or not local_id.isdigit():
        return
    own = '%s:%d' % (node, port_base + int(local_id))
    if own != address:
        raise ClusterError('SLURM_PROCID=%s runs on %s (SLURM_LOCALID=%s) but the block layout gives it %s: '
                           'run srun with --distribution=block'
                           % (environ.get('SLURM_PROCID'), node, local_id, address))



def expand_hostlist(hostlist):
    """A Slurm node list -> host names, in order: 'n[1-2],m5,o[08-10]' ->
    ['n1', 'n2', 'm5', 'o08', 'o09', 'o10'] (zero padding kept; the syntax of
    SlurmClusterResolver's expand_hostlist). ValueError on a malformed list."""
    hosts = []
    for part in _split_outside_brackets(hostlist):
        match = re.fullmatch(r'([^,\[\]]*)(?:\[([^\]]+)\])?', part)
        if match is None or not part:
            raise ValueError('invalid hostlist %r: cannot read %r' % (hostlist, part))
        prefix, ranges = match.groups()
        if ranges is None:
            hosts.append(prefix)
        else:
            hosts.extend(prefix + number for number in _expand_ranges(hostlist, ranges))
    return hosts


def _split_outside_brackets(text):
    parts, current, depth = [], '', 0
    for char in text:
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
            continue
        depth += {'[': 1, ']': -1}.get(char, 0)
        current += char
    if current:
        parts.append(current)
    return parts


def _expand_ranges(hostlist, ranges):
    """'1-3,07' -> '1', '2', '3', '07' (each number as wide as its range's start)."""
    for item in ranges.split(','):
        bounds = item.split('-')
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise ValueError('invalid hostlist %r: cannot read the range %r' % (hostlist, item))
        first, last = int(bounds[0]), int(bounds[-1])
        for number in range(first, last + 1):
            yield str(number).zfill(len(bounds[0]))


def expand_tasks_per_node(tasks_per_node):
    """SLURM_STEP_TASKS_PER_NODE -> one count per node: '3(x2),2,1' -> [3, 3, 2, 1]."""
    counts = []
    for part in tasks_per_node.split(','):
        match = re.fullmatch(r'(\d+)(?:\(x(\d+)\))?', part)
        if match is None:
            raise ValueError('invalid tasks-per-node list %r: cannot read %r' % (tasks_per_node, part))
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def slurm_gpus_per_task(environ=os.environ, info=None):
    """The GPUs a Slurm allocation gives this training task (None outside a Slurm step or
    without GPUs): SLURM_GPUS_PER_TASK (`--gpus-per-task`, e.g. '2' or 'a100:2'), else the
    node's SLURM_GPUS_ON_NODE shared by the training tasks on this node (ps tasks use none)."""
    if 'SLURM_STEP_ID' not in environ:
        return None
    per_task = environ.get('SLURM_GPUS_PER_TASK', '').rsplit(':', 1)[-1]
    if per_task.isdigit() and int(per_task) > 0:
        return int(per_task)
    on_node = environ.get('SLURM_GPUS_ON_NODE', '')
    if not on_node.isdigit() or int(on_node) == 0:
        return None
    trainers_here = 1
    if info is not None and info.task_type != 'ps':
        host = info.address.rpartition(':')[0]
        trainers_here = sum(1 for job in ('chief', 'worker') for address in info.cluster_spec.get(job, [])
                            if address.rpartition(':')[0] == host)
    return max(1, int(on_node) // trainers_here)

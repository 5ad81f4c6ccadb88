"""TF_CONFIG for a pod of a JobSet (Kubeflow Trainer v2's TrainJob runs on JobSet).

Kubeflow Trainer v2 has no TensorFlow runtime (the Training Operator v1's TFJob set TF_CONFIG in
every pod; Trainer v2 does not), so configs/cluster/trainjob.yaml runs, in every pod,

    TF_CONFIG=$(python -m fcn.cluster.jobset); export TF_CONFIG; exec python train.py ...

and this module writes that TF_CONFIG from what Kubernetes gives the pod:
  - FCN_JOBSET_NAME: the JobSet's name (the label jobset.sigs.k8s.io/jobset-name, through the
    downward API; Trainer v2 names the JobSet after the TrainJob);
  - FCN_REPLICATED_JOB: the pod's replicated job (label jobset.sigs.k8s.io/replicatedjob-name):
    `ps` holds the variables, `node` (Trainer v2's name for the trainer's job) are the workers;
  - JOB_COMPLETION_INDEX: the pod's index in its Indexed Job (set by Kubernetes);
  - FCN_NUM_PS, FCN_NUM_WORKERS: how many of each (the runtime's ps parallelism, the TrainJob's
    numNodes); FCN_PORT: the port every task listens on (default 2222).
A pod's stable name is JobSet's: JOBSET-REPLICATEDJOB-JOBINDEX-PODINDEX.JOBSET (one Job per
replicated job here, so JOBINDEX is 0). No TensorFlow import.
"""
import json
import os
import sys

from fcn.cluster.roles import ClusterError, parse_tf_config

JOB_TYPES = {'ps': 'ps', 'node': 'worker'}
DEFAULT_PORT = 2222


def _count(environ, key):
    value = environ.get(key, '')
    if not value.isdigit():
        raise ClusterError('%s must be a number of tasks, got %r' % (key, value))
    return int(value)


def host(jobset, replicated_job, index, port):
    """The DNS name JobSet gives pod `index` of the replicated job's first (only) Job."""
    return '%s-%s-0-%d.%s:%d' % (jobset, replicated_job, index, jobset, port)


def tf_config(environ=os.environ):
    """The TF_CONFIG dict of this pod. Raises ClusterError naming a missing or bad variable."""
    jobset = environ.get('FCN_JOBSET_NAME', '')
    if not jobset:
        raise ClusterError('FCN_JOBSET_NAME is not set (the label jobset.sigs.k8s.io/jobset-name, '
                           'through the downward API)')
    replicated = environ.get('FCN_REPLICATED_JOB', '')
    if replicated not in JOB_TYPES:
        raise ClusterError('FCN_REPLICATED_JOB must be one of %s, got %r' % (', '.join(JOB_TYPES), replicated))
    index = _count(environ, 'JOB_COMPLETION_INDEX')
    port = int(environ.get('FCN_PORT', DEFAULT_PORT))
    counts = {'ps': _count(environ, 'FCN_NUM_PS'), 'node': _count(environ, 'FCN_NUM_WORKERS')}
    if index >= counts[replicated]:
        raise ClusterError('JOB_COMPLETION_INDEX %d is outside the %d %s tasks (FCN_NUM_%s)' % (
            index, counts[replicated], replicated, 'PS' if replicated == 'ps' else 'WORKERS'))
    cluster = {JOB_TYPES[job]: [host(jobset, job, i, port) for i in range(n)] for job, n in counts.items() if n}
    config = {'cluster': cluster, 'task': {'type': JOB_TYPES[replicated], 'index': index}}
    parse_tf_config(json.dumps(config))  # the same checks train.py makes
    return config


def main():
    try:
        print(json.dumps(tf_config()))
    except ClusterError as e:
        print('error: cannot make TF_CONFIG for this pod: %s' % e, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())

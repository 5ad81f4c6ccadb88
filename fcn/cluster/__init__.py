"""Cluster jobs (between-graph replication with parameter servers), in three modules:

- fcn.cluster.roles:   which process of a job this is (TF_CONFIG, Slurm); no TensorFlow import.
- fcn.cluster.done:    the file by which the chief ends the ps tasks; no TensorFlow import.
- fcn.cluster.runtime: TensorFlow servers, sessions and synchronous replicas.

fcn.task dispatches on the role: ps tasks serve, the evaluator evaluates, chief and workers train.
"""

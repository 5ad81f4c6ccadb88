"""A run dir and what it binds.

A run dir describes itself (config.yaml: the resolved config it was trained with; dataset.json:
its classes), and is the truth for everything that shapes the trained variables or what the
network computes. RUN_BOUND_KEYS lists those keys: eval, export, predict, browse and a resumed
train read them from the run, whatever config the command line names. FREE_KEYS are the keys
the command line chooses for each command (what to evaluate, where to write, how to train on).
Every key of configs/base.yaml is in exactly one of the two (tests/test_run_keys.py).
"""

# Keys whose value the run's checkpoints were trained with.
RUN_BOUND_KEYS = (
    'model.name', 'model.width', 'model.dropout_keep_prob', 'model.weight_decay', 'model.upsample',
    'model.skip_scaling',
    'data.num_classes',          # the classes (and the ignore label) are the run's dataset.json's
    'train.ema_decay',           # the moving averages are variables of the run's checkpoints
)

# Keys each command may choose freely.
FREE_KEYS = (
    'data.dir', 'data.train_split', 'data.eval_split', 'data.num_readers', 'data.num_preprocess_threads',
    'data.shuffle_capacity',
    'augment.min_scale', 'augment.max_scale', 'augment.scale_step', 'augment.flip', 'augment.brightness',
    'augment.contrast', 'augment.saturation', 'augment.hue',
    'init.checkpoint', 'init.exclude_scopes', 'init.ignore_missing_vars',
    'train.run_dir', 'train.steps', 'train.batch_size', 'train.crop_size', 'train.learning_rate',
    'train.lr_schedule', 'train.lr_power', 'train.end_learning_rate', 'train.momentum', 'train.optimizer',
    'train.warmup_steps', 'train.warmup_start_factor', 'train.decay_steps', 'train.decay_rate',
    'train.clip_gradient_norm', 'train.lr_multipliers', 'train.bias_lr_multiplier', 'train.save_every_steps',
    'train.keep_checkpoints', 'train.summary_every_steps', 'train.log_every_steps', 'train.seed',
    'train.deterministic', 'train.accumulate_steps', 'train.trainable_scopes', 'train.mixed_precision',
    'train.xla',
    'loss.terms', 'loss.class_weights', 'loss.top_k_percent', 'loss.hard_mining_anneal_steps', 'loss.normalization',
    'eval.checkpoint', 'eval.max_images', 'eval.interval_secs', 'eval.timeout_secs', 'eval.max_evals',
    'eval.scales', 'eval.flip', 'eval.tile_size', 'eval.tile_overlap', 'eval.save_predictions',
    'eval.per_image', 'eval.moving_averages', 'eval.fscore_beta',
    'deploy.num_clones', 'deploy.clone_on_cpu', 'deploy.gpu_memory_growth', 'deploy.sync_replicas',
    'deploy.replicas_to_aggregate',
)

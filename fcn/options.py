"""The config turned into typed option values, once, at the orchestration floor.

fcn.task, fcn.train_lib, fcn.eval_lib and the export entry read the config; what they hand
down (to fcn.optim, fcn.losses, fcn.nets, fcn.input) are the small frozen values below, as
`inference` below does for the inference graph (DeepLab's ModelOptions). The values
were checked when the config was loaded (fcn.config.CHECKS); this only converts them.
"""
import dataclasses

from fcn import losses, optim
from fcn.deploy import DeploymentConfig
from fcn.config import LOSS_TERM_OPTIONS, crop_size
from fcn.input.preprocess import AugmentOptions
from fcn.input.provider import InputOptions
from fcn.nets.fcn import ModelOptions


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """What the training graph (fcn.train_lib.TrainGraph) and the layers below it need of a config."""
    model: ModelOptions
    schedule: optim.Schedule
    optimizer: optim.OptimizerOptions
    gradients: optim.GradientOptions
    augment: AugmentOptions
    input: InputOptions
    loss: losses.LossOptions
    batch_size: int  # per process, split over the clones
    accumulate_steps: int
    seed: int  # None: nondeterministic
    mixed_precision: bool
    ema_decay: float
    trainable_scopes: tuple
    sync_replicas: bool  # cluster jobs
    replicas_to_aggregate: int  # None: the number of workers


def deployment(cfg, cluster_info=None):
    """fcn.deploy.DeploymentConfig from the `deploy` section and, in a cluster job, this
    process's fcn.cluster.ClusterInfo (a 'chief' or 'worker' task; None = single process)."""
    deploy = cfg.deploy
    if cluster_info is None:
        return DeploymentConfig(num_clones=deploy.num_clones, clone_on_cpu=deploy.clone_on_cpu)
    if cluster_info.task_type not in ('chief', 'worker'):
        raise ValueError('only chief and worker tasks train; this task is %s:%d'
                         % (cluster_info.task_type, cluster_info.task_index))
    return DeploymentConfig(
        num_clones=deploy.num_clones, clone_on_cpu=deploy.clone_on_cpu,
        replica_id=cluster_info.task_index, num_replicas=cluster_info.num_workers,
        num_ps_tasks=cluster_info.num_ps, worker_job_name=cluster_info.task_type)


def model(cfg):
    """ModelOptions from the `model` section."""
    m = cfg.model
    return ModelOptions(name=m.name, width=float(m.width), dropout_keep_prob=float(m.dropout_keep_prob),
                        weight_decay=float(m.weight_decay), upsample=m.upsample,
                        skip_scaling=bool(m.skip_scaling))


def inference(cfg):
    """The keyword arguments of fcn.inference.predict_classes (after images, num_classes):
    model.*, eval.scales, eval.flip, eval.tile_size, eval.tile_overlap (checked)."""
    from fcn import inference as inference_graph
    return {'model': model(cfg).kwargs(), 'scales': inference_graph.check_scales(cfg.eval.scales),
            'flip': bool(cfg.eval.flip), 'tile_size': inference_graph.check_tile_size(cfg.eval.tile_size),
            'tile_overlap': inference_graph.check_tile_overlap(cfg.eval.tile_overlap)}


def training(cfg, info):
    """TrainOptions of a config; `info` (fcn.data.info.DatasetInfo) gives the class count and
    the training split's pixel counts that loss.class_weights may be computed from."""
    t = cfg.train
    return TrainOptions(model=model(cfg), schedule=schedule(cfg), optimizer=optimizer(cfg),
                        gradients=gradients(cfg), augment=augment(cfg), input=input_pipeline(cfg),
                        loss=loss(cfg, info), batch_size=t.batch_size, accumulate_steps=t.accumulate_steps,
                        seed=t.seed, mixed_precision=bool(t.mixed_precision), ema_decay=float(t.ema_decay),
                        trainable_scopes=tuple(t.trainable_scopes), sync_replicas=bool(cfg.deploy.sync_replicas),
                        replicas_to_aggregate=cfg.deploy.replicas_to_aggregate)


def schedule(cfg):
    t = cfg.train
    return optim.Schedule(name=t.lr_schedule, learning_rate=float(t.learning_rate), total_steps=int(t.steps),
                          end_learning_rate=float(t.end_learning_rate), lr_power=float(t.lr_power),
                          decay_steps=int(t.decay_steps), decay_rate=float(t.decay_rate),
                          warmup_steps=int(t.warmup_steps), warmup_start_factor=float(t.warmup_start_factor))


def optimizer(cfg):
    return optim.OptimizerOptions(name=cfg.train.optimizer, momentum=float(cfg.train.momentum))


def gradients(cfg):
    t = cfg.train
    return optim.GradientOptions(clip_norm=float(t.clip_gradient_norm),
                                 lr_multipliers=tuple((scope, float(factor)) for scope, factor in t.lr_multipliers),
                                 bias_lr_multiplier=float(t.bias_lr_multiplier))


def augment(cfg):
    a = cfg.augment
    return AugmentOptions(crop_size=crop_size(cfg.train.crop_size), min_scale=float(a.min_scale),
                          max_scale=float(a.max_scale), scale_step=float(a.scale_step), flip=bool(a.flip),
                          brightness=float(a.brightness), contrast=float(a.contrast),
                          saturation=float(a.saturation), hue=float(a.hue))


def input_pipeline(cfg):
    d = cfg.data
    return InputOptions(num_readers=d.num_readers, num_preprocess_threads=d.num_preprocess_threads,
                        shuffle_capacity=d.shuffle_capacity, deterministic=bool(cfg.train.deterministic),
                        seed=cfg.train.seed)


def loss(cfg, info):
    """LossOptions; loss.class_weights resolved against the training split of `info`."""
    weights = losses.resolve_class_weights(cfg.loss.class_weights, info.split(cfg.data.train_split),
                                           info.num_classes)
    return losses.LossOptions(terms=tuple(loss_term(term) for term in cfg.loss.terms),
                              class_weights=None if weights is None else tuple(weights),
                              top_k_percent=float(cfg.loss.top_k_percent),
                              hard_mining_anneal_steps=int(cfg.loss.hard_mining_anneal_steps),
                              normalization=cfg.loss.normalization)


def loss_term(term):
    """A LossTerm from one (checked) entry of loss.terms: {name, weight, options of that loss}."""
    term_options = {option: float(term.get(option, default))
                    for option, default in LOSS_TERM_OPTIONS[term['name']].items()}
    return losses.LossTerm(name=term['name'], weight=float(term.get('weight', 1.0)), **term_options)

"""Training configuration: typed defaults ← a YAML file ← ``key.sub=value`` overrides.

Unknown keys and wrong types fail with one line naming the key, before anything is built.
The merged result is written into the run directory, which is then enough to reproduce it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from depth_ros.synthetic.drive import CAMERA_PROFILES

# data.resize_policy: the ``fixed`` and ``canonical`` policies of depth_ros.models.metadata
# (``native`` models, completion, train on fixed-size crops).
RESIZE_POLICIES = ("fixed", "canonical")
DATASETS = ("drives", "kitti_eigen", "kitti_completion", "nyu", "bag")
REQUIRED_DATA_KEYS = {"drives": ("root",), "bag": ("bags", "image_topic", "lidar_topic"),
                      "kitti_eigen": ("train_split", "val_split", "raw_root", "depth_root"),
                      "kitti_completion": ("root", "raw_root"),
                      "nyu": ("train_path", "val_path")}


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


@dataclass
class ModelConfig:
    """Which registered model to train and its constructor arguments."""

    name: str = "mono_cnn"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SyntheticSplit:
    """Drives the data engine renders (if absent): seeds ``seed … seed + drives − 1``."""

    drives: int = 1
    frames: int = 20
    seed: int = 0
    # Keep every k-th of the LiDAR's 4000 azimuth steps: 2 (the engine's default) matches
    # real KITTI's density.
    azimuth_decimation: int = 2
    stereo: bool = True  # also render camera 03 (training reads camera 02 only)
    # kitti: each drive's camera within ±5 % of KITTI's, at data.image_width × image_height;
    # varied: each drive draws its own sensor size (4:3, 16:9, KITTI-wide), lens (45–100°
    # horizontal field of view) and camera height (the engine's docs/engine.md).
    camera_profile: str = "kitti"


@dataclass
class DriveSet:
    """More training drives (``data.extra_train``): every drive under ``root``, rendered there
    first by the data engine when ``synthetic`` is given (e.g. a varied-camera set)."""

    root: str = ""
    synthetic: SyntheticSplit | None = None


@dataclass
class DataConfig:
    """Which frames to train and validate on (``dataset``) and the network input size.

    ``drives``: KITTI-layout drives under ``<root>/train`` and ``<root>/val``.
    ``kitti_eigen``: the Eigen split lists ``train_split`` / ``val_split`` (BTS format) with
    images under ``raw_root`` and ground truth under ``depth_root`` (data_depth_annotated).
    ``kitti_completion``: ``<root>/train`` and ``<root>/val`` of data_depth_velodyne, images
    under ``raw_root``, ground truth under ``<depth_root>/train`` and ``/val`` (empty: inside
    root). KITTI frames are cut to the benchmark crop (352×1216), then resized (``crop:
    resize``) or randomly cropped (``crop: random``; validation: the centre) to the input size.
    ``nyu``: ``train_path`` / ``val_path``, each ``nyu_depth_v2_labeled.mat`` or a BTS sync
    folder (with ``train_split`` / ``val_split`` lists, optional), resized or cropped likewise.
    """

    dataset: str = "drives"  # drives | kitti_eigen | kitti_completion | nyu
    root: str = "outputs/data/synthetic"
    raw_root: str = ""  # KITTI raw tree (kitti_eigen, kitti_completion)
    depth_root: str = ""  # data_depth_annotated (kitti_eigen, kitti_completion)
    train_split: str = ""  # split list (kitti_eigen; nyu sync folders, optional)
    val_split: str = ""
    train_path: str = ""  # nyu: a labelled .mat file or a sync folder
    val_path: str = ""
    crop: str = "resize"  # resize | random: how real frames reach the input size
    kb_crop: bool = True  # KITTI: cut to the benchmark's 352×1216 first
    synthetic: SyntheticSplit | None = None  # render the training drives if absent
    val_synthetic: SyntheticSplit | None = None  # held-out drives, other seeds
    image_width: int = 1242  # size the engine renders at
    image_height: int = 375
    input_height: int = 128  # network input size; multiples of the model's stride
    input_width: int = 416
    # drives with crop: random: frames stay at the engine's full resolution; training takes
    # random input_height x input_width crops, validation the bottom-centre
    # val_height x val_width crop (0: the input size).
    val_height: int = 0
    val_width: int = 0
    # Ground truth 0 means "far" (rendered depth: sky, beyond range) rather than "no data"
    # (LiDAR): train those pixels towards the model's max depth instead of ignoring them.
    zero_depth_is_far: bool = False
    load_threads: int = 2  # threads decoding and resizing PNGs at start-up
    render_workers: int = 2  # processes rendering synthetic drives
    num_workers: int = 0  # DataLoader worker processes (augmentation); 0: in the trainer
    # Training drives beside <root>/train, each under a root of its own (drives: the
    # dataset's): [{root: DIR, synthetic: {drives: 32, frames: 10, seed: 5000,
    # camera_profile: varied}}]; several cameras under one run. Their seeds must not overlap
    # the validation seeds.
    extra_train: list[DriveSet] = field(default_factory=list)
    # How frames reach the network; the model's metadata says it (resize_policy).
    # fixed: every frame resized to input_height × input_width (or cropped, crop: random),
    #   depth expressed at the training frames' median focal length.
    # canonical (drives only): frames kept at their own resolution; each training sample is
    #   resized by s = canonical_focal_px / fx · u, u log-uniform in scale_jitter, then
    #   cropped to input_height × input_width (padded where smaller: no ground truth there),
    #   its depth expressed at canonical_focal_px. Validation frames are resized to fx =
    #   canonical_focal_px, padded (bottom, right) to a multiple of val_pad_multiple (all to the
    #   largest) and scored whole. crop, val_height and val_width are not used.
    resize_policy: str = "fixed"
    canonical_focal_px: float = 0.0  # the model's focal length (train_focal_px)
    scale_jitter: list[float] = field(default_factory=lambda: [1.0, 1.0])  # [lo, hi] of u
    val_pad_multiple: int = 32  # the model's stride (32: mono_cnn, mono_c2f, fusion models)
    # canonical: the largest network input [height, width] the runtime may use (metadata
    # max_input_height/width; larger resized frames run in tiles); [0, 0]: no limit.
    max_input_size: list[int] = field(default_factory=lambda: [0, 0])
    # --- dataset: bag (adapting to a robot's own recording, training.data.adapt) ---------
    bags: list[str] = field(default_factory=list)  # rosbag2 directories or .mcap/.db3 files
    image_topic: str = ""
    lidar_topic: str = ""
    camera_info_topic: str = ""  # empty: <image topic's namespace>/camera_info
    lidar_to_camera: list[float] = field(default_factory=list)  # 16 values, row-major 4×4
    odometry_topic: str = ""  # nav_msgs/Odometry for the photometric poses; empty: TF/ICP
    world_frame: str = ""  # the fixed frame of the poses read from TF
    bag_cache_dir: str = ""  # decoded frames kept here between runs; empty: no cache
    # Frames to train on, e.g. "0-4" or "0-99,120-199" (inclusive ranges; empty: all but
    # the validation frames); frames scored before and after ("5-6"; empty: every 10th
    # frame, held out of training). Validation frames are never photometric sources, nor
    # are the frames in bag_exclude_photometric.
    bag_frames: str = ""
    bag_val_frames: str = ""
    bag_exclude_photometric: str = ""
    # Engine drives mixed into the bag's frames so that the model keeps what it knew:
    # KITTI-layout drives under <mix_engine_root>/train, this share of each epoch's items.
    mix_engine_root: str = ""
    mix_engine_ratio: float = 0.5
    bag_export: bool = True  # after training: ONNX + model card + before/after scores


@dataclass
class AugmentConfig:
    """Training-time augmentation; factors are drawn uniformly from [1 − x, 1 + x]."""

    hflip_prob: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    # Fusion models: the probability of a frame without any LiDAR (the model must then fall
    # back to the image alone), and the fraction of LiDAR points kept in the others, drawn
    # uniformly from [lidar_keep_min, lidar_keep_max] per frame (a sparser sensor).
    lidar_drop_prob: float = 0.0
    lidar_keep_min: float = 1.0
    lidar_keep_max: float = 1.0
    # Probability that a frame loses its returns inside 1-4 random rectangles (occlusion,
    # black cars, glass), and the share of the returns that have a >10 % farther return within
    # 3 px which take that farther depth instead: real KITTI's background seen past a near
    # object's edge (the model learns to overrule them from the exact ground truth).
    lidar_patch_prob: float = 0.0
    lidar_bleed_fraction: float = 0.0
    # Camera effects (training.data.camera_effects): what real cameras do to a picture that
    # the engine does not, each applied with its own probability (0: off, the default) and a
    # strength: "up to x" draws uniformly from [0, x], "factor x" from [1 − x, 1 + x].
    style_prob: float = 0.0  # colour transfer: Lab means/stds of another recent image
    style_strength: float = 1.0  # blend weight of that transfer, up to x
    style_bank: int = 64  # how many recent images' Lab statistics are kept to draw from
    rolling_shutter_prob: float = 0.0  # rows shifted sideways, image and depth alike
    rolling_shutter_px: float = 3.0  # bottom row's shift relative to the top, up to ±x px
    motion_blur_prob: float = 0.0  # a linear kernel along a random direction
    motion_blur_min_px: float = 2.0  # its length, uniform in [min, max] pixels
    motion_blur_max_px: float = 8.0
    defocus_prob: float = 0.0  # a disk (pillbox) kernel
    defocus_radius_px: float = 1.5  # its radius, uniform in [0.5, x] pixels
    chromatic_prob: float = 0.0  # lateral chromatic aberration: red and blue scaled apart
    chromatic_scale: float = 0.002  # red scaled by 1 + s and blue by 1 − s, s up to ±x
    vignette_prob: float = 0.0  # radial fall-off, quadratic in the distance to the centre
    vignette: float = 0.3  # light lost in the corners, up to x
    noise_prob: float = 0.0  # sensor noise: std sqrt(shot · value + read²) per pixel
    noise_shot: float = 0.002  # shot-noise variance per unit of signal, up to x
    noise_read: float = 0.01  # read-noise std, up to x
    white_balance_prob: float = 0.0  # red and blue gains (green 1)
    white_balance: float = 0.15  # factor x
    gamma_prob: float = 0.0  # value ** gamma
    gamma: float = 0.25  # factor x
    hue_prob: float = 0.0  # hue rotation
    hue: float = 0.05  # fraction of the colour circle, up to ±x (≤ 0.5)
    grayscale_prob: float = 0.0  # the Rec. 601 luma in all three channels
    jpeg_prob: float = 0.0  # JPEG re-compression (OpenCV's encoder)
    jpeg_quality_min: int = 30  # quality, uniform integer in [min, max] (1-100)
    jpeg_quality_max: int = 95

    def __post_init__(self) -> None:
        # Checked here, as the config is built, so a bad value fails before any data loads.
        probabilities = ("style_prob", "rolling_shutter_prob", "motion_blur_prob",
                         "defocus_prob", "chromatic_prob", "vignette_prob", "noise_prob",
                         "white_balance_prob", "gamma_prob", "hue_prob", "grayscale_prob",
                         "jpeg_prob")
        checks = [*((name, 0.0 <= getattr(self, name) <= 1.0) for name in probabilities),
                  ("style_strength", 0.0 <= self.style_strength <= 1.0),
                  ("style_bank", self.style_bank >= 1),
                  ("rolling_shutter_px", self.rolling_shutter_px >= 0.0),
                  ("motion_blur_min_px", 1.0 <= self.motion_blur_min_px),
                  ("motion_blur_max_px", self.motion_blur_min_px <= self.motion_blur_max_px),
                  ("defocus_radius_px", self.defocus_radius_px >= 0.5),
                  ("chromatic_scale", 0.0 <= self.chromatic_scale <= 0.05),
                  ("vignette", 0.0 <= self.vignette < 1.0),
                  ("noise_shot", self.noise_shot >= 0.0),
                  ("noise_read", self.noise_read >= 0.0),
                  ("white_balance", 0.0 <= self.white_balance < 1.0),
                  ("gamma", 0.0 <= self.gamma < 1.0),
                  ("hue", 0.0 <= self.hue <= 0.5),
                  ("jpeg_quality_min", 1 <= self.jpeg_quality_min <= self.jpeg_quality_max),
                  ("jpeg_quality_max", self.jpeg_quality_max <= 100)]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"augment.{name} is out of range: {getattr(self, name)!r}")


@dataclass
class PseudoConfig:
    """Training on pseudo-labelled images (``pseudo:`` in a training config).

    Off unless ``enabled`` and ``dirs`` is not empty. The perturbations are applied to the
    pseudo-labelled samples only (the labelled ones keep ``augment:``); their defaults follow
    UniMatch / Depth Anything's strong perturbations.
    """

    dirs: list[str] = field(default_factory=list)  # pseudo_label.py output directories
    enabled: bool = True  # false: ignore dirs
    ratio: int = 2  # pseudo-labelled samples per labelled sample in each step (1:ratio)
    loss_weight: float = 1.0  # total loss = labelled loss + loss_weight × pseudo loss
    # SSI normalisation for relative labels: median (Depth Anything) | lstsq (MiDaS).
    ssi_method: str = "median"
    hflip_prob: float = 0.5  # left-right flip of image and label together
    jitter_prob: float = 0.8  # probability of colour jitter (brightness/contrast/sat./hue)
    jitter: float = 0.5  # brightness, contrast and saturation factors from [1 − x, 1 + x]
    hue: float = 0.25  # hue rotation from [−hue, hue] of the colour circle (≤ 0.5)
    grayscale_prob: float = 0.2  # probability of turning the image grey
    blur_prob: float = 0.5  # probability of a Gaussian blur
    blur_sigma_max: float = 2.0  # its sigma is drawn from [0.1, blur_sigma_max] pixels
    cutmix_prob: float = 0.5  # probability that a sample gets a box of its partner's pixels
    cutmix_area_min: float = 0.02  # box area as a fraction of the image, uniform in
    cutmix_area_max: float = 0.4  # [cutmix_area_min, cutmix_area_max]

    @property
    def active(self) -> bool:
        """Whether pseudo-labelled batches are used."""
        return self.enabled and bool(self.dirs)

    def validate(self, error: type[ValueError] = ValueError) -> None:
        """Raise ``error`` (e.g. the trainer's ``ConfigError``) naming the first field out of
        range."""
        probabilities = ("hflip_prob", "jitter_prob", "grayscale_prob", "blur_prob",
                         "cutmix_prob")
        checks = [("ratio", self.ratio >= 1), ("loss_weight", self.loss_weight >= 0),
                  ("ssi_method", self.ssi_method in ("median", "lstsq")),
                  ("jitter", 0 <= self.jitter <= 1), ("hue", 0 <= self.hue <= 0.5),
                  ("blur_sigma_max", self.blur_sigma_max >= 0.1),
                  ("cutmix_area_min", 0 < self.cutmix_area_min <= self.cutmix_area_max),
                  ("cutmix_area_max", self.cutmix_area_max <= 1),
                  *((name, 0 <= getattr(self, name) <= 1) for name in probabilities)]
        for name, ok in checks:
            if not ok:
                raise error(f"pseudo.{name} is out of range: {getattr(self, name)!r}")
        if not all(isinstance(d, str) and d for d in self.dirs):
            raise error(f"pseudo.dirs must be a list of directory paths, got {self.dirs}")


@dataclass
class OptimConfig:
    """AdamW with a linear warm-up, then cosine or polynomial decay; optional gradient
    accumulation, a lower backbone learning rate and an EMA of the weights."""

    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | poly
    poly_power: float = 0.9
    min_lr_ratio: float = 0.01  # final lr as a fraction of lr
    grad_clip_norm: float = 5.0  # 0 disables clipping
    # Micro-batches of batch_size per optimiser step: the effective batch is
    # batch_size × accumulate_steps × the number of processes.
    accumulate_steps: int = 1
    # lr of the backbone (parameters under encoder. or pretrained.) as a fraction of lr.
    backbone_lr_factor: float = 1.0
    # > 0: validate, deploy and checkpoint an exponential moving average of the weights.
    ema_decay: float = 0.0


@dataclass
class LossConfig:
    """Scale-invariant log loss, optionally after a scale-only warm-up (DepthFormer's), for
    depth models; L1 + L2 + log + confidence terms for completion models."""

    silog_lambda: float = 0.85
    silog_warmup_steps: int = 0
    # Completion models (a ``confidence`` output): ``training.losses.completion_loss``.
    l2_weight: float = 0.1  # per metre
    log_weight: float = 10.0  # metres
    far_weight: float = 0.1  # rendered sky (zero_depth_is_far) in the depth terms
    initial_weight: float = 0.5  # the depth before propagation
    confidence_weight: float = 0.1
    # Trust of each input return, learned directly: cross-entropy against whether the return
    # lies within trust_threshold (relative) of the ground truth (0: trust is learned only
    # through the depth terms, as the bundled stage 1-5 models were).
    trust_weight: float = 0.0
    trust_threshold: float = 0.05
    # Held-out returns (kitti_dev's protocol as a training signal): this share of the input
    # returns is removed from the input and the output there is also trained towards the
    # LiDAR's own value with this weight (0: off).
    holdout_fraction: float = 0.0
    holdout_weight: float = 0.0
    # > 0: the held-out term only at returns within this relative error of the ground truth
    # (a return through a window is not a value to learn); 0: at every held-out return.
    holdout_max_error: float = 0.0
    # True: the held-out term also skips the returns the model's own see-through filter
    # (occlusion_radius_px) drops from the whole scan: the model is not asked to reproduce
    # a value it would have dropped from its input.
    holdout_skip_see_through: bool = False
    # Bag frames (data.dataset: bag, training.adapt): log-L1 on the occlusion-filtered
    # LiDAR (mono) or the completion loss on it (fusion), plus the photometric loss.
    sparse_weight: float = 1.0
    photometric_weight: float = 1.0
    smoothness_weight: float = 1e-3
    occlusion_radius_px: int = 3  # a return with a >10 % nearer one this close is dropped


@dataclass
class TrainConfig:
    """The whole training configuration."""

    name: str = "mono_cnn"  # run directory: <output_dir>/<name>
    output_dir: str = "runs"
    seed: int = 0
    epochs: int = 10
    max_steps: int = 0  # > 0: stop after this many steps (overrides epochs)
    batch_size: int = 8  # per process and micro-batch (see optim.accumulate_steps)
    num_threads: int = 0  # torch intra-op threads, 0 = torch's default
    device: str = "auto"  # auto (CUDA when available) | cuda | cpu
    amp: bool = True  # mixed precision on CUDA (autocast + GradScaler); CPU runs are fp32
    amp_dtype: str = "float16"  # float16 | bfloat16
    ddp_find_unused_parameters: bool = False  # for models with parameters a step can skip
    log_every: int = 20  # steps between progress-bar and TensorBoard updates of the loss
    tensorboard: bool = True  # scalars and image panels under <run dir>/tensorboard
    checkpoint_every: int = 500  # steps between step_<step>.pt checkpoints (0: none)
    val_every: int = 1  # validate every this many epochs (and after the last step)
    keep_checkpoints: int = 3  # newest step_<step>.pt files kept; 0 keeps all
    auto_resume: bool = False  # continue from the newest complete checkpoint in the run dir
    version: str = "1"
    # A checkpoint whose weights start the run (fine-tuning; optimiser and step start afresh,
    # unlike --resume); empty: the model's own initialisation.
    init_checkpoint: str = ""
    # Parameters of the model that init_checkpoint may lack (name prefixes, e.g. "context."
    # for a module added to a trained model); they keep their own initialisation. Anything
    # else missing, extra or of another shape is still an error.
    init_new_parameters: list[str] = field(default_factory=list)
    # Submodules loaded from checkpoints of their own after init_checkpoint (attribute name →
    # a checkpoint of that module alone, e.g. {mono: depth_ros/weights/mono_cnn_synthetic.pt}
    # for fusion_spn's frozen mono prior); init_checkpoint may lack them. Strict: every key.
    init_submodules: dict[str, str] = field(default_factory=dict)
    train_data: str = ""  # recorded in the model metadata; empty: described from data
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # Pseudo-labelled images mixed into every step (training/pseudo_label.py writes them).
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)

    def validate(self) -> None:
        """Checks across fields that the types alone do not express."""
        self.pseudo.validate(ConfigError)
        for key, allowed in (("data.dataset", DATASETS),
                             ("data.crop", ("resize", "random")),
                             ("optim.schedule", ("cosine", "poly")),
                             ("device", ("auto", "cuda", "cpu")),
                             ("amp_dtype", ("float16", "bfloat16"))):
            value = self._get(key)
            if value not in allowed:
                raise ConfigError(f"{key} must be {' or '.join(allowed)}, got {value!r}")
        for key, low in (("epochs", 1), ("batch_size", 1), ("log_every", 1), ("val_every", 1),
                         ("optim.accumulate_steps", 1), ("checkpoint_every", 0),
                         ("keep_checkpoints", 0), ("data.num_workers", 0),
                         ("optim.backbone_lr_factor", 0)):
            if self._get(key) < low:
                raise ConfigError(f"{key} must be at least {low}, got {self._get(key)}")
        augment = self.augment
        for key in ("lidar_patch_prob", "lidar_bleed_fraction"):
            if not 0.0 <= getattr(augment, key) <= 1.0:
                raise ConfigError(f"augment.{key} must be in [0, 1], got "
                                  f"{getattr(augment, key)}")
        if not 0.0 <= augment.lidar_drop_prob <= 1.0:
            raise ConfigError(f"augment.lidar_drop_prob must be in [0, 1], got "
                              f"{augment.lidar_drop_prob}")
        if not 0.0 < augment.lidar_keep_min <= augment.lidar_keep_max <= 1.0:
            raise ConfigError("augment.lidar_keep_min/lidar_keep_max must satisfy 0 < min <= "
                              f"max <= 1, got {augment.lidar_keep_min}, "
                              f"{augment.lidar_keep_max}")
        if not 0.0 <= self.optim.ema_decay < 1.0:
            raise ConfigError(f"optim.ema_decay must be in [0, 1), got {self.optim.ema_decay}")
        if self.data.input_height < 1 or self.data.input_width < 1:
            raise ConfigError("data.input_height and data.input_width must be positive")
        self._validate_dataset()
        self._validate_resize_policy()
        splits = [("data.synthetic", self.data.synthetic)] + [
            (f"data.extra_train[{i}].synthetic", extra.synthetic)
            for i, extra in enumerate(self.data.extra_train)]
        for key, split in [*splits, ("data.val_synthetic", self.data.val_synthetic)]:
            if split is not None and split.camera_profile not in CAMERA_PROFILES:
                raise ConfigError(f"{key}.camera_profile must be "
                                  f"{' or '.join(CAMERA_PROFILES)}, got "
                                  f"{split.camera_profile!r}")
        for i, extra in enumerate(self.data.extra_train):
            if not extra.root:
                raise ConfigError(f"data.extra_train[{i}] needs a root directory")
        val = self.data.val_synthetic
        for _, train in splits:
            if train and val and _overlap(train, val):
                raise ConfigError(
                    f"validation seeds {val.seed}..{val.seed + val.drives - 1} overlap "
                    f"training seeds {train.seed}..{train.seed + train.drives - 1}")

    def _validate_resize_policy(self) -> None:
        data = self.data
        if data.resize_policy not in RESIZE_POLICIES:
            raise ConfigError(f"data.resize_policy must be {' or '.join(RESIZE_POLICIES)}, got "
                              f"{data.resize_policy!r}")
        if data.extra_train and data.dataset != "drives":
            raise ConfigError("data.extra_train is for data.dataset drives")
        if data.resize_policy != "canonical":
            return
        if data.dataset != "drives":
            raise ConfigError(f"data.resize_policy canonical is for data.dataset drives, not "
                              f"{data.dataset}")
        if not data.canonical_focal_px > 0:
            raise ConfigError(f"data.resize_policy canonical needs data.canonical_focal_px > 0 "
                              f"(the model's focal length in pixels), got "
                              f"{data.canonical_focal_px}")
        jitter = data.scale_jitter
        if len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]:
            raise ConfigError(f"data.scale_jitter must be [lo, hi] with 0 < lo <= hi, got "
                              f"{jitter}")
        if (len(data.max_input_size) != 2 or min(data.max_input_size) < 0
                or (0 in data.max_input_size and any(data.max_input_size))):
            raise ConfigError(f"data.max_input_size must be [height, width] (both > 0) or "
                              f"[0, 0], got {data.max_input_size}")
        if data.val_pad_multiple < 1:
            raise ConfigError(f"data.val_pad_multiple must be at least 1, got "
                              f"{data.val_pad_multiple}")

    def _validate_dataset(self) -> None:
        data = self.data
        for key in REQUIRED_DATA_KEYS[data.dataset]:
            if not getattr(data, key):
                raise ConfigError(f"data.dataset {data.dataset} needs data.{key}")
        if data.dataset == "bag":
            if not 0.0 <= data.mix_engine_ratio < 1.0:
                raise ConfigError(f"data.mix_engine_ratio must be in [0, 1), got "
                                  f"{data.mix_engine_ratio}")
            if data.lidar_to_camera and len(data.lidar_to_camera) != 16:
                raise ConfigError(f"data.lidar_to_camera must hold 16 numbers (a row-major "
                                  f"4x4), got {len(data.lidar_to_camera)}")
        if data.dataset != "drives" and data.zero_depth_is_far:
            raise ConfigError(f"data.zero_depth_is_far is for rendered ground truth; in "
                              f"{data.dataset} 0 means no measurement: set it to false")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    def _get(self, dotted: str) -> Any:
        value: Any = self
        for part in dotted.split("."):
            value = getattr(value, part)
        return value


def _overlap(a: SyntheticSplit, b: SyntheticSplit) -> bool:
    return a.seed < b.seed + b.drives and b.seed < a.seed + a.drives


def _check_type(value: Any, hint: Any, key: str) -> Any:
    """Return value converted to ``hint`` (int → float only), or raise ConfigError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(value, inner, key)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return _build(hint, value, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (inner,) = typing.get_args(hint)
        return [_check_type(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int) and not isinstance(value, bool):
        # YAML reads data.bag_frames=5 as a number; a frame list "5" is meant.
        return str(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads "3e-4" as a string: it needs a dot to be a float.
        try:
            return float(value)
        except ValueError:
            pass
    # bool is an int subclass: refuse True where a number is meant, and 1 for a bool.
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {hint.__name__}, got {type(value).__name__} "
                          f"{value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (valid: "
                          f"{', '.join(prefix + k for k in hints)})")
    return cls(**{k: _check_type(v, hints[k], prefix + k) for k, v in data.items()})


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
                ) -> TrainConfig:
    """Defaults, then the YAML file at ``path``, then ``key.sub=value`` overrides (values are
    parsed as YAML, so ``optim.lr=3e-4`` is a float and ``data.synthetic=null`` is None)."""
    data: dict[str, Any] = TrainConfig().to_dict()
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping at the top level")
        data = _merge(data, loaded or {})
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        _set_path(data, key.strip(), value)
    config = _build(TrainConfig, data)
    config.validate()
    return config


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the merged config as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

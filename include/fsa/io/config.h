// Typed configuration: YAML files (the reference implementation's key layout)
// parsed, validated and written back out in one place.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace fsa::io {

/// Thrown for any configuration problem; the message names the file and the
/// dotted key and says what was expected.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The image pipeline of list-file datasets (data::ImageTransform).
struct TransformConfig {
  int64_t crop_size = 224;  ///< training crop and test centre crop
  /// Shorter side resized to this before the test crop (and random_crop's crop).
  int64_t resize_size = 256;
  double color_jitter = 0.4;  ///< brightness, contrast and saturation strength (0: off)
  /// Training geometry: random_resized_crop (torchvision's RandomResizedCrop,
  /// `scale` and `ratio`) or random_crop (Resize(resize_size), then
  /// RandomCrop(crop_size, padding): CIFAR's augmentation, for small images).
  std::string train_crop = "random_resized_crop";
  std::vector<double> scale{0.08, 1.0};             ///< area fraction range
  std::vector<double> ratio{3.0 / 4.0, 4.0 / 3.0};  ///< aspect ratio (w/h) range
  int64_t padding = 4;                              ///< random_crop's zero padding
};

struct DatasetConfig {
  /// CIFAR-10-LT, CIFAR-100-LT, Fashion-MNIST-LT, MNIST-LT, ImageFolder-LT, or
  /// a list-file dataset: ImageNet-LT, Places-LT, iNaturalist-LT, ListFile-LT
  /// (case, '-' and '_' are ignored: the reference's "Cifar10-LT" is accepted).
  std::string name = "CIFAR-10-LT";
  std::string root;
  /// dataset.kwargs.im: n_max / n_min; 1 keeps the balanced set (METHOD.md).
  double imbalance_factor = 100.0;
  /// dataset.normalize.{mean,std}: per-channel, on [0,1] pixels. Empty means
  /// the dataset's default (recorded in the resolved config).
  std::vector<double> mean;
  std::vector<double> std;
  /// dataset.max_test_per_class: keep at most this many test images per class
  /// (0 = all). For quick checks on a slice of a real test set.
  int64_t max_test_per_class = 0;
  /// dataset.val_fraction: hold out this fraction of each class's training
  /// images (after the long-tail subsampling; at least one image of a class
  /// with two or more) as the validation split that chooses the best epoch
  /// and τ. 0 (default): no validation split unless a list-file dataset
  /// names dataset.val_list. In [0, 0.5].
  double val_fraction = 0;
  /// List-file datasets only: the split lists (`relative/path label` lines,
  /// paths relative to root); a relative list path is taken from root.
  /// train_list and test_list are required, val_list is optional; ImageNet-LT
  /// and Places-LT default to the released names, ImageNet_LT_train.txt,
  /// ImageNet_LT_val.txt, ImageNet_LT_test.txt (Places_LT_… likewise).
  std::string train_list, val_list, test_list;
  /// List-file datasets: classes (ImageNet-LT 1000, Places-LT 365,
  /// iNaturalist-LT 8142 by default; ListFile-LT: 0 = largest label + 1).
  int64_t num_classes = 0;
  /// List-file datasets: decoding and augmentation worker threads.
  int64_t num_workers = 4;
  /// Image files (list-file datasets and image folders): false (default)
  /// stops the run at the first image that cannot be decoded, naming it;
  /// true decodes every image once when the dataset is loaded and leaves out
  /// (logging each, then the count) those that cannot be decoded. CIFAR
  /// binary and IDX files have no per-image files to skip.
  bool skip_corrupt = false;
  /// List-file datasets: the image pipeline.
  TransformConfig transform;
};

/// True for the list-file dataset names (ImageNet-LT, Places-LT,
/// iNaturalist-LT, ListFile-LT; case, '-' and '_' ignored).
bool is_list_dataset(const std::string& name);

struct ModelConfig {
  std::string name = "resnet32";
  /// linear (logits W·x + b) | cosine (logits ⟨x/‖x‖, w_c/‖w_c‖⟩, no bias: the
  /// normalised classifier LDAM is trained with, Cao et al. 2019).
  std::string classifier = "linear";
  /// model.pretrained: a file Python's torch.save wrote whose weights start
  /// Phase I (io::read_state_dict: a state_dict, or one wrapped under
  /// 'state_dict', 'model_state_dict', 'model_state' or 'model'); "" (or
  /// false): random initialisation. Names are matched strictly; a classifier
  /// of another number of classes is re-initialised (train::load_pretrained).
  std::string pretrained;
};

struct OptimizerConfig {
  std::string name = "SGD";  ///< SGD | Adam | AdamW
  double lr = 0.1;
  double momentum = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
};

struct SchedulerConfig {
  /// warmup (linear warm-up, then multi-step; METHOD.md Phase I) |
  /// MultiStepLR | StepLR | CosineAnnealingLR | constant.
  std::string name = "warmup";
  int64_t t_max = 0;     ///< CosineAnnealingLR: period in epochs (0: train.num_epoch)
  double eta_min = 0.0;  ///< CosineAnnealingLR: the last learning rate
  std::vector<int64_t> milestones;
  double gamma = 0.1;
  int64_t step_size = 30;
  int64_t warmup_epochs = 5;
  double warmup_factor = 1.0 / 3.0;  ///< first epoch's lr as a fraction of lr
};

/// train.loss (train/loss.h). In YAML either a name (the reference's
/// `loss: SoftmaxCrossEntropy`) or a mapping with `name` and the loss's keys.
struct LossConfig {
  /// cross_entropy (alias SoftmaxCrossEntropy) | focal | ldam | balanced_softmax
  std::string name = "cross_entropy";
  double gamma = 1.0;       ///< focal: focusing parameter γ >= 0 (0 is cross-entropy)
  double max_margin = 0.5;  ///< ldam: the rarest class's margin (Cao et al.: 0.5)
  double scale = 30.0;      ///< ldam: logit scale s (Cao et al.: 30)
  /// Class weights: none | class_balanced (from the first epoch) | drw
  /// (deferred re-weighting: none before drw_epoch, class_balanced from it).
  std::string weighting = "none";
  double beta = 0.9999;  ///< class-balanced weights' β in [0, 1) (Cui et al.)
  /// drw: the 0-based epoch from which the weights apply, counted as the
  /// schedule's milestones are (Cao et al.: 160 of 200, with the lr drop).
  int64_t drw_epoch = 160;
};

/// train.sampler: how Phase I draws an epoch's images (Kang et al. 2020,
/// Eq. 1: class j drawn with probability ∝ n_j^q, then one of its images).
struct SamplerConfig {
  /// instance_balanced (q = 1, each image once per epoch: a permutation) |
  /// class_balanced (q = 0) | square_root (q = 1/2) | progressive (from
  /// instance- to class-balanced, linearly over train.num_epoch).
  std::string name = "instance_balanced";
};

struct TrainConfig {
  int64_t num_epoch = 200;
  int64_t batch_size = 128;
  OptimizerConfig optimizer;
  SchedulerConfig lr_scheduler;
  std::optional<double> gradient_clip;  ///< max global L2 norm, none if unset
  LossConfig loss;
  SamplerConfig sampler;
};

struct TestConfig {
  int64_t batch_size = 256;
  /// Evaluate on the test split every this many epochs during training; the
  /// last epoch is always evaluated (and so is every epoch a checkpoint is
  /// chosen on: "best" is chosen among evaluated epochs).
  int64_t interval = 1;
  /// Post-hoc logit adjustment τ (Menon et al. 2021): the test logits minus
  /// τ·log π; 0 leaves them as they are.
  double logit_adjust_tau = 0.0;
};

struct CheckpointConfig {
  /// Weights to start from (Phase II and III: the Phase I checkpoint).
  std::string load_checkpoint;
  /// Resume training (weights, optimiser, epoch) from this checkpoint.
  std::string resume;
  /// Save `epoch_NNNN.pt` every N epochs; 0 saves only best and last.
  int64_t save_checkpoint_interval = 0;
  /// Also write last.pt every N training steps within an epoch (0: at epoch
  /// ends only), from which --resume continues mid-epoch exactly as the
  /// uninterrupted run would: for epochs long enough that a kill should not
  /// lose one (ImageNet-LT, iNaturalist). A checkpoint of ResNet-50 costs
  /// about a second; choose N so that this stays small beside N steps.
  int64_t save_step_interval = 0;
};

struct LogConfig {
  int64_t log_interval = 50;      ///< batches between running-loss lines in log.txt
  std::string progress = "auto";  ///< auto | bar | lines | quiet (console progress)
};

/// Data-parallel training (torchrun or SLURM; dist/dist.h).
struct DistConfig {
  /// dist.backend: auto (Gloo on CPU), gloo, or nccl (CUDA builds with NCCL).
  std::string backend = "auto";
  /// dist.timeout: seconds a collective waits for the other ranks before the
  /// run stops with an error naming the rank (a rank that died or stalls).
  double timeout = 1800;
  /// dist.sync_batchnorm: BatchNorm layers in training mode normalise by the
  /// statistics of the global batch, as torch.nn.SyncBatchNorm does, instead
  /// of each rank's share (models/batch_norm.h).
  bool sync_batchnorm = false;
};

struct FinetuneConfig {
  int64_t Na = 3;                       ///< fused maps per tail image
  int64_t Nf = 3;                       ///< confusing classes per tail class
  double ts = 0.8;                      ///< class-specific threshold: M_t > ts
  double tg = 0.2;                      ///< class-generic threshold: M_c < tg
  std::string confusing_from = "head";  ///< head | all
  double head_ratio = 0.9;              ///< head: shortest prefix with >= this share
  std::vector<int64_t> head_classes;    ///< explicit head list; overrides head_ratio
  bool offline = false;                 ///< Phase III from stored features
  /// Phase III analysis file (Phase II output); set by `fsa run`.
  std::string analysis;
};

/// Decoupled classifier learning on a frozen Phase I network (Kang et al.,
/// ICLR 2020), `fsa decouple`; the pipeline section `decouple` holds its
/// schedule (train.*) and this key.
struct DecouplingConfig {
  /// crt (classifier re-trained from a fresh initialisation) | lws
  /// (learnable per-class scales of the Phase I classifier) | tau_norm
  /// (w_c / ‖w_c‖^τ, no training).
  std::string method = "crt";
  double tau = 1.0;  ///< tau_norm: τ >= 0
  /// decoupling.tau: search. τ is the value of 0, 0.1, ..., 2 with the best
  /// validation top-1 (the smallest on ties; Kang et al. 2020 choose τ on a
  /// validation set); needs a validation split.
  bool tau_search = false;
};

struct FeatureConfig {
  std::string cam_layer = "layer3";  ///< feature.cam_layers (one layer)
  bool store = false;                ///< Phase II writes the offline feature store
  /// Phase II keeps the whole score matrix S (C² floats) in analysis.pt.
  bool score_matrix = false;
};

/// Everything one phase needs. Single-phase files map onto it directly; in a
/// pipeline file the top-level keys are merged under each phase_* section.
struct Config {
  std::optional<uint64_t> random_seed = 0;
  std::string device = "cpu";
  int64_t threads = 0;  ///< 0: all hardware threads
  /// Arithmetic of the training and evaluation forward passes: "fp32", or
  /// "bf16-mixed" (autocast to bfloat16 for convolutions and matrix products;
  /// weights, optimiser state, losses and Phase II stay float32). The config's
  /// "auto" (the default) is resolved by parse_config, so this field is always
  /// one of the two: bf16-mixed on a CPU device whose processor has native
  /// bfloat16 instructions (native_bf16_cpu()), fp32 otherwise (CUDA included,
  /// until the GPU schedule is measured). docs/RESULTS.md: the full CIFAR-10-LT
  /// schedule lands within 0.1 point of fp32.
  std::string precision = "fp32";
  /// Layout of 4-D weights and activations: "contiguous" (NCHW) or
  /// "channels_last" (NHWC; same values up to float rounding, faster on CPU).
  /// "auto" (the default): channels_last on a CPU device when the precision is
  /// bf16-mixed (the pair measured together), contiguous otherwise.
  std::string memory_format = "contiguous";
  /// Keys of the public reference implementation's configs that fsa reads
  /// elsewhere or not at all, each with what fsa does instead ("'vis': class
  /// activation maps ... are drawn by `fsa visualize`"); make_workspace logs
  /// them, all at once.
  std::vector<std::string> notices;
  /// True when precision / memory_format came from "auto": the run's log says
  /// why, and a resumed run keeps the checkpoint's (train::keep_resumed_precision).
  bool precision_auto = false;
  bool memory_format_auto = false;
  bool bf16_mixed() const { return precision == "bf16-mixed"; }
  bool channels_last() const { return memory_format == "channels_last"; }
  DatasetConfig dataset;
  ModelConfig model;
  TrainConfig train;
  TestConfig test;
  CheckpointConfig checkpoint;
  LogConfig log;
  DistConfig dist;
  FinetuneConfig finetune;
  FeatureConfig feature;
  DecouplingConfig decoupling;
  /// The file it came from, for messages.
  std::string source;
};

struct PipelineConfig {
  Config phase_i, phase_ii, phase_iii;
};

/// Applies `key=value` overrides (dotted keys; the value parsed as YAML) to a
/// document. In a pipeline document an override of a top-level key also
/// replaces that key in every phase section that sets it (a phase's own
/// setting would otherwise win); `phase_i.<key>=...` changes one phase.
/// Throws ConfigError naming the override when it is malformed.
void apply_overrides(YAML::Node& doc, const std::vector<std::string>& overrides);

/// Loads a YAML file. Throws ConfigError if missing or not valid YAML (with line).
YAML::Node load_yaml_file(const std::string& path);

/// True if the document is a pipeline file (has phase_i/phase_ii/phase_iii).
bool is_pipeline(const YAML::Node& doc);

/// The merged document of one phase ("phase_i", ...): top-level keys with the
/// phase's section merged over them. A single-phase document is returned as is.
YAML::Node phase_document(const YAML::Node& doc, const std::string& phase);

/// Whether this processor has native bfloat16 arithmetic (x86-64 AVX-512 BF16,
/// which oneDNN uses for bfloat16 convolutions; every AMX processor has it too).
/// Without it bfloat16 is emulated and slower than float32, so "auto" precision
/// stays fp32. Always false off x86-64.
bool native_bf16_cpu();

/// Parses and validates one phase's document. `source` names the file in
/// messages. Throws ConfigError on an unknown key, wrong type or bad value.
Config parse_config(const YAML::Node& doc, const std::string& source);

/// Parses a pipeline document (every phase validated).
PipelineConfig parse_pipeline(const YAML::Node& doc, const std::string& source);

/// Writes a resolved config as YAML, in the same key layout it is read from.
std::string to_yaml(const Config& cfg);

/// Reads, overrides and parses the file for one phase. A pipeline file is
/// resolved for `phase`; a single-phase file is taken whole.
Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                   const std::string& phase);

}  // namespace fsa::io

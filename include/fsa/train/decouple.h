// Decoupled classifier learning (Kang, Xie, Rohrbach, Yan, Gordo, Feng,
// Kalantidis: "Decoupling Representation and Classifier for Long-Tailed
// Recognition", ICLR 2020, Sec. 4): the Phase I network's feature extractor
// is frozen (evaluation mode, no gradients) and only its classifier changes:
//   crt       the classifier re-initialised and re-trained, by default on
//             class-balanced batches (train.sampler: class_balanced);
//   lws       the Phase I classifier's rows rescaled by learned per-class
//             factors f_c (logits f_c·(w_c·x + b_c)), trained the same way;
//   tau_norm  no training: w_c ← w_c / ‖w_c‖^τ and no bias (Kang et al.'s
//             τ-normalised classifier); τ given, or `search`ed on the
//             validation split (kTauGrid).
// `fsa decouple --checkpoint P1.pt` runs it with the pipeline file's
// `decouple` section (its own schedule: train.*).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "fsa/io/config.h"
#include "fsa/train/phases.h"

namespace fsa::train {

/// The τ-normalised classifier weights w_c / ‖w_c‖^τ of weight float [C, K]
/// (rows of norm 0 stay 0). τ = 0 returns the weights, τ = 1 unit rows.
torch::Tensor tau_normalize(const torch::Tensor& weight, double tau);

/// The τ values decoupling.tau: search tries: 0, 0.1, ..., 2.0.
std::vector<double> tau_grid();

/// Runs cfg.decoupling.method on the Phase I network in `checkpoint`:
/// trains (crt, lws) for train.num_epoch epochs on the training loop of
/// engine.h, or applies tau_norm; writes checkpoints/{last,best}.pt (whole
/// networks, loadable by `fsa test`), metrics.json and the report into
/// out_dir. Throws io::ConfigError for a cosine classifier with tau_norm (its
/// rows are normalised already), for checkpoint.resume (decoupled runs
/// are short: they restart) or for decoupling.tau: search without a
/// validation split, CheckpointError for an unreadable checkpoint or
/// one that is not a Phase I checkpoint.
PhaseResult run_decouple(const io::Config& cfg, Workspace& ws, const std::string& checkpoint,
                         const std::string& out_dir);

}  // namespace fsa::train

// Conversions between RGB picture tensors and cv::Mat, shared by the viz
// sources; not part of the public API (OpenCV stays private to fsa_core).
#pragma once

#include <torch/types.h>

#include <opencv2/core.hpp>

namespace fsa::viz::detail {

/// Throws std::invalid_argument naming `what` unless rgb is uint8 [H, W, 3].
void check_rgb(const torch::Tensor& rgb, const char* what);

/// A copy of rgb uint8 [H, W, 3] as a CV_8UC3 matrix (channel order kept: RGB).
cv::Mat to_mat(const torch::Tensor& rgb);

/// A copy of a CV_8UC3 matrix as uint8 [H, W, 3].
torch::Tensor to_tensor(const cv::Mat& m);

}  // namespace fsa::viz::detail
